"""The web app's settings: environment variables (and an optional `.env`), with defaults.

Every setting is one `APP_*` variable, declared once below with its default
and meaning (the README's table is generated from these declarations; see
agent_sandbox.settings). `Settings.from_env()` reads them once at start. A
`.env` file (path in APP_ENV_FILE, default `./.env`) fills in variables that
the real environment does not set. Sandbox limits come from the library's own
AGENT_SANDBOX_* variables (see agent_sandbox.spec.Limits).

`APP_DATA_DIR` is the app's own folder (database, uploads, results); it is
not the sandbox's /outputs. `APP_OUTPUTS`, its old name, still works.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox import settings
from agent_sandbox.agent.models import UnknownModel, check_model
from agent_sandbox.settings import MB, SettingError, megabytes, setting
from agent_sandbox.spec import Limits
from agent_sandbox.workspace import DEFAULT_MY_FILES
from frontend.guard import Networks, socket_budget

KB = 1024


def kilobytes(raw: str) -> int:
    """a number of kilobytes"""  # (the error message says "expected <this docstring>")
    return int(float(raw) * KB)


# Relative to the folder the server starts in (the repository's root for `make run`).
SAMPLE_FILE = Path("samples") / "plate_reader.csv"
ROLES = ("all", "web", "runner")  # what one process does: see `python -m frontend --help`


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


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _secret_key(path: Path) -> str:
    """A random key kept in a file (mode 600) so sessions survive restarts.

    Processes starting at once on one (shared) data folder agree on one key: each writes its
    own, and the first hard link to the key's name wins (atomic, even on NFS)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(mine, path)
        except FileExistsError:
            pass  # another process was first: its key is the one
        finally:
            os.unlink(mine)
    return path.read_text().strip()


@dataclass
class Settings:
    host: str = setting("APP_HOST", "127.0.0.1", "address the server listens on (`--host` overrides)")
    port: int = setting("APP_PORT", 5000, "port the server listens on (`--port` overrides)")
    data_dir: Path = setting("APP_DATA_DIR", Path("outputs"),
                             "the app's folder: the database, `uploaded_files/<job>/` and `results/<job>/` "
                             "(`APP_OUTPUTS` is its deprecated name)", old=("APP_OUTPUTS",))
    database: Path | None = setting("APP_DATABASE", None, "SQLite file holding jobs and their events "
                                    "(unless APP_DATABASE_URL is set)", shown="`<APP_DATA_DIR>/jobs.sqlite3`")
    database_url: str = setting("APP_DATABASE_URL", "", "the job store on PostgreSQL, e.g. "
                                "`postgresql://app:secret@db.internal/jobs`, shared by any number of web and "
                                "runner processes on any number of hosts (see \"Past one machine\")",
                                shown="SQLite (APP_DATABASE)")
    database_connections: int = setting("APP_DATABASE_CONNECTIONS", 8, "PostgreSQL connections one process "
                                        "opens at most (plus one that listens for notices)", above=0)
    role: str = setting("APP_ROLE", "all", "`web`: pages, API and event streams; `runner`: runs jobs (no "
                        "port); `all`: both in one process (`--role` overrides)")
    my_files: Path | None = setting("APP_MY_FILES", DEFAULT_MY_FILES, "folder copied into every workspace",
                                    also=("AGENT_SANDBOX_MY_FILES",), shown="$AGENT_SANDBOX_MY_FILES or ./my_files")
    backends: list[str] = setting("APP_BACKENDS", ["local"], "comma-separated backends users may pick")
    models: list[str] = setting("APP_MODELS", ["offline"], "comma-separated models users may pick, e.g. "
                                "`openai:gpt-4o,anthropic:claude-sonnet-4-5` (`offline` is always offered; "
                                "keys from OPENAI_API_KEY etc., kept on the host)")
    default_backend: str = setting("APP_DEFAULT_BACKEND", "", "backend used when the request names none",
                                   shown="first of APP_BACKENDS")
    default_model: str = setting("APP_DEFAULT_MODEL", "", "model used when the request names none",
                                 shown="first of APP_MODELS")
    run_jobs: bool = setting("APP_RUN_JOBS", True, "0: a process of role `all` runs no jobs (as `--role web`)")
    runner_lease_seconds: float = setting(
        "APP_RUNNER_LEASE_SECONDS", 15.0, "how long a running job's lease lasts after its runner's last "
        "heartbeat (renewed every third of it); then another runner takes the job over and records it "
        "interrupted (at once when that runner was a process of this machine that is gone)", above=0)
    workers: int = setting("APP_WORKERS", 2, "jobs running at once (sandboxes); the rest wait in the queue")
    stop_seconds: float = setting("APP_STOP_SECONDS", 15.0, "on SIGTERM, how long running sandboxes may take to "
                                  "stop (outputs collected) before they are ended by id, their outputs lost")
    max_active_jobs: int = setting("APP_MAX_ACTIVE_JOBS", 100,
                                   "queued+running jobs for everybody; beyond it 429 with Retry-After")
    max_active_per_owner: int = setting("APP_MAX_ACTIVE_PER_OWNER", 5, "queued+running jobs per owner; beyond it 429")
    max_active_per_address: int = setting(
        "APP_MAX_ACTIVE_PER_ADDRESS", 10, "queued+running jobs of all anonymous visitors from one client address "
        "(users named by APP_TRUSTED_USER_HEADER count per user only); beyond it 429")
    new_visitors_per_address: int = setting(
        "APP_NEW_VISITORS_PER_ADDRESS", 20, "new anonymous identities one client address may get per minute "
        "(one is made at a visitor's first job, or when a script asks GET /api/session); beyond it 429 with "
        "Retry-After", above=0)
    max_file_bytes: int = setting("APP_MAX_FILE_MB", 1024 * MB, "largest uploaded file in MB (413 beyond)",
                                  parse=megabytes, shown="`1024`")
    max_request_bytes: int = setting("APP_MAX_REQUEST_MB", 2048 * MB, "largest upload request in MB (413 beyond)",
                                     parse=megabytes, shown="`2048`")
    max_files: int = setting("APP_MAX_FILES", 20, "most files in one upload (400 beyond)")
    secret_key: str = setting("APP_SECRET_KEY", "", "signs session cookies",
                              shown="generated, kept in APP_SECRET_KEY_FILE")
    secret_key_file: Path | None = setting("APP_SECRET_KEY_FILE", None, "where the generated key is kept (mode 600)",
                                           shown="`<APP_DATA_DIR>/secret_key`")
    trusted_user_header: str = setting("APP_TRUSTED_USER_HEADER", "",
                                       "header set by an authenticating proxy naming the user, e.g. "
                                       "X-Forwarded-User; honoured only from APP_TRUSTED_PROXIES (required "
                                       "with it)", shown="off")
    trusted_proxies: list[str] = setting(
        "APP_TRUSTED_PROXIES", [], "addresses or networks of reverse proxies in front of the app (e.g. "
        "127.0.0.1 or 10.0.0.0/8): a request from one of them is from the last address in its "
        "X-Forwarded-For that is not a proxy; their connections are not capped per address", shown="off")
    max_streams_per_owner: int = setting("APP_MAX_STREAMS_PER_OWNER", 20,
                                         "live logs (event streams) one visitor or user may have open; "
                                         "beyond it 429 with Retry-After", above=0)
    max_streams_per_address: int = setting("APP_MAX_STREAMS_PER_ADDRESS", 200,
                                           "live logs open from one client address; beyond it 429", above=0)
    max_streams: int = setting("APP_MAX_STREAMS", 0, "live logs open in all; beyond it 503 with Retry-After",
                               shown="9/10 of APP_MAX_CONNECTIONS")
    max_connections: int = setting(
        "APP_MAX_CONNECTIONS", 0, "client connections open in all, live logs included; a new one beyond it "
        "gets 503 and is closed", shown="the open-files limit less a reserve of a quarter "
        "(at least 3 per server thread + 256): 15,000 at 20,000")
    max_connections_per_address: int = setting(
        "APP_MAX_CONNECTIONS_PER_ADDRESS", 64, "connections one client address may hold open besides its live "
        "logs (0: no cap); a new one beyond it gets 503 and is closed")
    header_timeout: float = setting("APP_HEADER_TIMEOUT", 10.0, "seconds a client has to send a request's "
                                    "line and headers, however slowly they come (408 and closed after)", above=0)
    server_threads: int = setting("APP_SERVER_THREADS", 64,
                                  "server threads started up front (the pool grows on demand)")
    server_max_threads: int = setting("APP_SERVER_MAX_THREADS", 1000,
                                      "most server threads, one per request in progress (event streams hold none)")
    max_streams_per_link: int = setting("APP_MAX_STREAMS_PER_LINK", 20,
                                        "live logs open through one share link, by all its viewers together "
                                        "(each also counts against its address); beyond it 429", above=0)
    max_body_bytes: int = setting("APP_MAX_BODY_KB", 1024 * KB, "largest request body other than an upload "
                                  "(JSON, forms) in KB (413 beyond, before it is read)", parse=kilobytes,
                                  shown="`1024`", above=0)
    max_events_per_job: int = setting("APP_MAX_EVENTS_PER_JOB", 20000,
                                      "events of one run stored (the live log); the rest are counted, not "
                                      "stored, and the log says so", above=0)
    max_event_bytes_per_job: int = setting("APP_MAX_EVENT_MB_PER_JOB", 32 * MB,
                                           "MB of events of one run stored; the rest are counted, not stored, "
                                           "and the log says so", parse=megabytes, shown="`32`", above=0)
    max_storage_per_owner: int = setting(
        "APP_MAX_STORAGE_MB_PER_OWNER", 10240 * MB, "MB of uploads and results one owner's jobs may hold on "
        "disk, counted by real size (0: no quota); past it a new job gets 507, and a job's results are cut "
        "to what is left when it is queued", parse=megabytes, shown="`10240`")
    retention_days: float = setting("APP_RETENTION_DAYS", 0.0, "days a finished job (its log, uploads and "
                                    "results) is kept, then removed as if its owner deleted it (0: for ever)")
    render_max_bytes: int = setting("APP_RENDER_MAX_MB", 2 * MB, "largest report.html or Markdown file "
                                    "rendered for the page; a larger one is offered raw", parse=megabytes,
                                    shown="`2`", above=0)
    render_seconds: float = setting("APP_RENDER_SECONDS", 10.0, "seconds one report may take to render "
                                    "(in a process of its own, once; then kept); past it it is offered raw",
                                    above=0)
    render_processes: int = setting("APP_RENDER_PROCESSES", 2, "reports rendered at once (each in a process "
                                    "of its own); more views wait for one", above=0)
    heartbeat_seconds: float = setting("APP_HEARTBEAT_SECONDS", 15.0, "comment line sent on idle event streams")
    sandbox_network: bool = setting("APP_SANDBOX_NETWORK", False, "1: the agent's commands get outbound "
                                    "network (e.g. pip install); never the host's or private addresses")
    poll_seconds: float = setting("APP_POLL_SECONDS", 0.5, "how often the database is checked for work of "
                                                          "other processes (events, queued jobs)")
    sample_file: Path | None = setting("APP_SAMPLE_FILE", SAMPLE_FILE,
                                       "dataset the start page's \"try it with sample data\" button runs "
                                       "(empty: no button)", shown="`samples/plate_reader.csv`", blank=None)
    log_level: str = setting("APP_LOG_LEVEL", "INFO", "server log level: DEBUG, INFO, WARNING or ERROR")
    env_file: Path = setting("APP_ENV_FILE", Path(".env"), "optional file of KEY=VALUE lines read at start")
    limits: Limits = field(default_factory=Limits)  # AGENT_SANDBOX_* variables (agent_sandbox.spec.Limits)

    def socket_caps(self) -> tuple[int, int]:
        """(connections in all, event streams in all), under this process's open-files limit."""
        total = self.max_connections or socket_budget(self.server_max_threads)
        return total, min(total, self.max_streams or total * 9 // 10)

    def runs_jobs(self) -> bool:
        return self.role != "web" and self.run_jobs

    def serves_pages(self) -> bool:
        return self.role != "runner"

    def store_target(self) -> str | Path:
        """Where the job store is: the PostgreSQL URL, else the SQLite file."""
        return self.database_url or self.database

    def results_dir(self, job_id: str) -> Path:
        return self.data_dir / "results" / job_id

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        load_env_file(Path(os.environ.get("APP_ENV_FILE") or ".env"))
        s = settings.load(cls, **{"limits": Limits.from_env(), **overrides})
        s.resolve()
        return s

    def resolve(self) -> None:
        """Fill in the defaults that depend on other settings, then check them.

        Every path becomes absolute here, once, against the folder the server started
        in: Flask resolves a relative path against the `frontend` package instead.
        """
        self.data_dir = _absolute(self.data_dir)
        self.database = _absolute(self.database or self.data_dir / "jobs.sqlite3")
        self.my_files = self.my_files and _absolute(self.my_files)
        self.secret_key_file = self.secret_key_file and _absolute(self.secret_key_file)
        self.sample_file = self.sample_file and _absolute(self.sample_file)
        self.env_file = _absolute(self.env_file)
        if "offline" not in self.models:   # the playbook needs no key: always offered
            self.models = [*self.models, "offline"]
        self.default_backend = self.default_backend or (self.backends or [""])[0]
        self.default_model = self.default_model or (self.models or [""])[0]
        self.secret_key = self.secret_key or _secret_key(self.secret_key_file or self.data_dir / "secret_key")
        for model in self.models:
            try:
                check_model(model)
            except UnknownModel as exc:
                raise SettingError(f"APP_MODELS: {exc}") from None
        if self.default_backend not in self.backends:
            raise SettingError(f"default backend {self.default_backend!r} is not in APP_BACKENDS {self.backends}")
        if self.default_model not in self.models:
            raise SettingError(f"default model {self.default_model!r} is not in APP_MODELS {self.models}")
        if self.role not in ROLES:
            raise SettingError(f"APP_ROLE={self.role!r} is not valid: expected {', '.join(ROLES)}")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingError("APP_DATABASE_URL is not valid: expected postgresql://user:password@host/database")
        if self.workers < 1:
            raise SettingError("APP_WORKERS must be at least 1")
        if self.trusted_user_header and not self.trusted_proxies:
            raise SettingError(f"APP_TRUSTED_USER_HEADER={self.trusted_user_header} needs APP_TRUSTED_PROXIES: "
                               "the header is honoured only from the proxies listed there (any client "
                               "could send it)")
        if self.retention_days < 0 or self.max_storage_per_owner < 0:
            raise SettingError("APP_RETENTION_DAYS and APP_MAX_STORAGE_MB_PER_OWNER must be 0 (none) or more")
        try:
            Networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingError(f"APP_TRUSTED_PROXIES={','.join(self.trusted_proxies)!r} is not valid: {exc}") from None
