"""Helpers for the LLM tests: a RunSpec for an API model served by tests.fake_llm,
and the probe that looks for the model key inside the sandbox."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import uuid
from pathlib import Path

from agent_sandbox import events as ev
from agent_sandbox.relay import wire
from agent_sandbox.relay.host import ModelAccess, ModelRelay
from agent_sandbox.spec import Limits, RunSpec
from tests.fake_llm import FakeLLM

KEY_PREFIX = "sk-relaytest-"

CSV = b"well,strain,od\nA1,A,0.10\nA2,A,0.12\nB1,B,0.30\nB2,B,0.34\n"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_hex(12)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def llm_spec(tmp_path: Path, fake: FakeLLM, instructions: str = "plot od by strain",
             files: dict[str, bytes] | None = None, limits: Limits | None = None, **kwargs) -> RunSpec:
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {"plate.csv": CSV}).items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_bytes(data)
    env = kwargs.pop("env", {})
    return RunSpec(job_id=kwargs.pop("job_id", uuid.uuid4().hex[:16]), workspace=workspace,
                   results=tmp_path / "results", instructions=instructions,
                   model=f"{fake.provider}:test-model",
                   limits=limits or Limits(run_timeout=120, command_timeout=60, idle_timeout=60, model_retries=2),
                   model_access=ModelAccess(fake.provider, "test-model", fake.base_url, fake.key),
                   env=env, **kwargs)


# Run inside the sandbox: every /proc/*/environ and cmdline and every readable file
# (but the read-only system code under /usr and site-packages, and files over 20 MB)
# is searched for KEY_PREFIX; the sha256 of what follows each hit is printed, never the
# text, so the probe itself carries no key. The decoy it is given proves the search works.
PROBE = r'''
import hashlib, os, sys
PREFIX, N = b"sk-relaytest-", 24
found, scanned = set(), 0
def scan(data):
    i = data.find(PREFIX)
    while i >= 0:
        found.add(hashlib.sha256(data[i:i + len(PREFIX) + N]).hexdigest())
        i = data.find(PREFIX, i + 1)
def read(path):
    global scanned
    try:
        if os.path.getsize(path) > 20_000_000 and not path.startswith("/proc/"):
            return
        with open(path, "rb") as f:
            scan(f.read())
        scanned += 1
    except OSError:
        pass
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            read(f"/proc/{pid}/{name}")
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/proc", "/sys", "/dev", "/usr")
               and d not in ("site-packages", "dist-packages")]
    for name in files:
        path = os.path.join(top, name)
        if not os.path.islink(path):
            read(path)
print("PROBE scanned", scanned, "hits", " ".join(sorted(found)))
'''


def probe_commands(decoy: str) -> list[tuple[str, dict]]:
    """Tool calls that write the probe, plant the decoy and run it."""
    return [("write_file", {"path": "probe/probe.py", "content": PROBE}),
            ("shell", {"command": f"echo {decoy} > /tmp/decoy.txt; DECOY_ENV={decoy} python /outputs/probe/probe.py"})]


REACH = ("import sys, urllib.request\n"
         "try:\n"
         "    urllib.request.urlopen(sys.argv[1], data=b'{}', timeout=5)\n"
         "    print('REACHED')\n"
         "except Exception as exc:\n"
         "    print('BLOCKED', type(exc).__name__)\n")


def reach_command(url: str) -> str:
    """A shell command that tries to reach `url` from inside the sandbox."""
    return f"python -c {sh_quote(REACH)} {url}"


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def probe_hits(events: list[dict]) -> tuple[int, set[str]]:
    for e in events:
        for line in e.get("data", {}).get("text", "").splitlines():
            if line.startswith("PROBE scanned"):
                parts = line.split()
                return int(parts[2]), set(parts[4:])
    raise AssertionError("the probe printed nothing")


def all_text_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file())


class RelayClient:
    """Talks to a ModelRelay as an agent would: request frames in, reply frames back."""

    def __init__(self, relay: ModelRelay):
        self.relay = relay
        self.replies: dict[int, dict] = {}
        self.lines: list[str] = []
        self._frames = wire.Assembler()
        self._got = threading.Condition()
        relay.attach(self._line)

    def _line(self, line: str) -> None:
        with self._got:
            self.lines.append(line)
            done = self._frames.add(json.loads(line))
            if done is not None:
                self.replies[done[0]] = done[1]
                self._got.notify_all()

    def send(self, call_id: int, request: dict, step: int | None = None) -> None:
        for data in wire.frames(call_id, request):
            self.relay.handle({"type": ev.MODEL_REQUEST, "data": data, "step": step})

    def wait(self, call_id: int, timeout: float = 10) -> dict:
        with self._got:
            assert self._got.wait_for(lambda: call_id in self.replies, timeout), f"no reply to {call_id}"
            return self.replies[call_id]

    def ask(self, call_id: int, request: dict, timeout: float = 10) -> dict:
        self.send(call_id, request)
        return self.wait(call_id, timeout)
