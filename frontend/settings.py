"""The web app's settings: environment variables (and an optional `.env`), with defaults.

Every setting is one `APP_*` variable; `Settings.from_env()` reads them once at
start. A `.env` file (path in APP_ENV_FILE, default `./.env`) fills in
variables that the real environment does not set. Sandbox limits come from the
library's own AGENT_SANDBOX_* variables (see agent_sandbox.spec.Limits).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox.spec import MB, Limits

REPO = Path(__file__).resolve().parent.parent

# name: (default, description). The README's settings table is this list.
DOCUMENTED = {
    "APP_HOST": ("127.0.0.1", "address the server listens on (`--host` overrides)"),
    "APP_PORT": ("5000", "port the server listens on (`--port` overrides)"),
    "APP_DATABASE": ("outputs/jobs.sqlite3", "SQLite file holding jobs and their events"),
    "APP_OUTPUTS": ("outputs", "root for uploaded_files/<job>/ and results/<job>/"),
    "APP_MY_FILES": ("$AGENT_SANDBOX_MY_FILES or ./my_files", "folder copied into every workspace"),
    "APP_BACKENDS": ("local", "comma-separated backends users may pick"),
    "APP_MODELS": ("offline", "comma-separated models users may pick, e.g. `offline,openai:gpt-4o,anthropic:claude-sonnet-4-5` (offline is always offered)"),
    "APP_SANDBOX_NETWORK": ("0", "1: the agent's commands get outbound network (e.g. pip install); never the host's or private addresses"),
    "APP_DEFAULT_BACKEND": ("first of APP_BACKENDS", "backend used when the request names none"),
    "APP_DEFAULT_MODEL": ("first of APP_MODELS", "model used when the request names none"),
    "APP_RUN_JOBS": ("1", "1: this process runs jobs (exactly one per database); 0: it only serves pages, API and streams"),
    "APP_WORKERS": ("2", "jobs running at once (sandboxes); the rest wait in the queue"),
    "APP_MAX_ACTIVE_JOBS": ("100", "queued+running jobs for everybody; beyond it 429"),
    "APP_MAX_ACTIVE_PER_OWNER": ("5", "queued+running jobs per owner; beyond it 429"),
    "APP_MAX_FILE_MB": ("1024", "largest single uploaded file (413 beyond)"),
    "APP_MAX_REQUEST_MB": ("2048", "largest upload request (413 beyond)"),
    "APP_MAX_FILES": ("20", "most files in one upload (400 beyond)"),
    "APP_SECRET_KEY": ("generated", "signs session cookies; if unset one is generated and kept in APP_SECRET_KEY_FILE"),
    "APP_SECRET_KEY_FILE": ("<APP_OUTPUTS>/secret_key", "where the generated secret key is kept"),
    "APP_TRUSTED_USER_HEADER": ("(off)", "header set by an authenticating proxy naming the user, e.g. X-Forwarded-User"),
    "APP_SERVER_THREADS": ("64", "server threads started up front (the pool grows on demand)"),
    "APP_SERVER_MAX_THREADS": ("1000", "most server threads, one per request in progress (event streams hold none)"),
    "APP_HEARTBEAT_SECONDS": ("15", "comment line sent on idle event streams"),
    "APP_POLL_SECONDS": ("0.5", "how often the database is checked for work of other processes (events, queued jobs)"),
    "APP_ENV_FILE": (".env", "optional file of KEY=VALUE lines read at start"),
    "APP_SAMPLE_FILE": ("samples/plate_reader.csv", "dataset the start page's \"try it with sample data\" button runs (empty: no button)"),
}


def load_env_file(path: Path) -> None:
    """Fill os.environ from KEY=VALUE lines; the real environment wins."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip().strip('"').strip("'")
        os.environ.setdefault(key.strip(), value)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _optional_path(value: str) -> Path | None:
    return Path(value) if value.strip() else None


def _secret_key(path: Path) -> str:
    """A random key kept in a file (mode 600) so sessions survive restarts."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


@dataclass
class Settings:
    database: Path = Path("outputs/jobs.sqlite3")
    outputs: Path = Path("outputs")
    my_files: Path | None = None
    backends: list[str] = field(default_factory=lambda: ["local"])
    models: list[str] = field(default_factory=lambda: ["offline"])
    default_backend: str = "local"
    default_model: str = "offline"
    run_jobs: bool = True
    workers: int = 2
    max_active_jobs: int = 100
    max_active_per_owner: int = 5
    max_file_bytes: int = 1024 * MB
    max_request_bytes: int = 2048 * MB
    max_files: int = 20
    secret_key: str = ""
    trusted_user_header: str = ""
    host: str = "127.0.0.1"
    port: int = 5000
    server_threads: int = 64
    server_max_threads: int = 1000
    heartbeat_seconds: float = 15.0
    poll_seconds: float = 0.5
    sandbox_network: bool = False
    limits: Limits = field(default_factory=Limits)
    sample_file: Path | None = REPO / "samples" / "plate_reader.csv"

    def results_dir(self, job_id: str) -> Path:
        return self.outputs / "results" / job_id

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        load_env_file(Path(env.get("APP_ENV_FILE", ".env")))
        outputs = Path(env.get("APP_OUTPUTS", "outputs"))
        backends = _list(env.get("APP_BACKENDS", "local"))
        models = _list(env.get("APP_MODELS", "offline"))
        if "offline" not in models:   # the playbook needs no key: always offered
            models.append("offline")
        my_files = env.get("APP_MY_FILES") or env.get("AGENT_SANDBOX_MY_FILES")
        s = cls(
            database=Path(env.get("APP_DATABASE", str(outputs / "jobs.sqlite3"))),
            outputs=outputs,
            my_files=Path(my_files) if my_files else Path(__file__).resolve().parent.parent / "my_files",
            backends=backends,
            models=models,
            default_backend=env.get("APP_DEFAULT_BACKEND") or backends[0],
            default_model=env.get("APP_DEFAULT_MODEL") or models[0],
            run_jobs=env.get("APP_RUN_JOBS", "1").lower() not in ("0", "false", "no", "off"),
            workers=int(env.get("APP_WORKERS", 2)),
            max_active_jobs=int(env.get("APP_MAX_ACTIVE_JOBS", 100)),
            max_active_per_owner=int(env.get("APP_MAX_ACTIVE_PER_OWNER", 5)),
            max_file_bytes=int(float(env.get("APP_MAX_FILE_MB", 1024)) * MB),
            max_request_bytes=int(float(env.get("APP_MAX_REQUEST_MB", 2048)) * MB),
            max_files=int(env.get("APP_MAX_FILES", 20)),
            trusted_user_header=env.get("APP_TRUSTED_USER_HEADER", ""),
            host=env.get("APP_HOST", "127.0.0.1"),
            port=int(env.get("APP_PORT", 5000)),
            server_threads=int(env.get("APP_SERVER_THREADS", 64)),
            server_max_threads=int(env.get("APP_SERVER_MAX_THREADS", 1000)),
            heartbeat_seconds=float(env.get("APP_HEARTBEAT_SECONDS", 15)),
            poll_seconds=float(env.get("APP_POLL_SECONDS", 0.5)),
            sandbox_network=env.get("APP_SANDBOX_NETWORK", "0").lower() in ("1", "true", "yes", "on"),
            limits=Limits.from_env(),
            sample_file=_optional_path(env.get("APP_SAMPLE_FILE", str(REPO / "samples" / "plate_reader.csv"))),
        )
        s.secret_key = env.get("APP_SECRET_KEY") or _secret_key(
            Path(env.get("APP_SECRET_KEY_FILE", str(outputs / "secret_key"))))
        for name, value in overrides.items():
            setattr(s, name, value)
        s.check()
        return s

    def check(self) -> None:
        if self.default_backend not in self.backends:
            raise ValueError(f"default backend {self.default_backend!r} is not in APP_BACKENDS {self.backends}")
        if self.default_model not in self.models:
            raise ValueError(f"default model {self.default_model!r} is not in APP_MODELS {self.models}")
        if self.workers < 1:
            raise ValueError("APP_WORKERS must be at least 1")
