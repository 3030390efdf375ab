"""Helpers for the web app's tests: a real server process on 127.0.0.1, real HTTP clients.

`start_server(**env)` runs `python -m frontend --port <free>` in a temporary
folder with its own database and outputs, and the real local (bubblewrap)
backend; jobs use the "scripted" model so they are fast and deterministic.
`StandInBackend` is for the in-process route tests (test_routes.py).
"""

from __future__ import annotations

import io
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from agent_sandbox import events as ev
from agent_sandbox.backends.contract import Backend, Sandbox, Streams
from agent_sandbox.events import ACTIVE
from agent_sandbox.outputs import DirectorySource
from agent_sandbox.spec import RunSpec

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path, env: dict[str, str], open_files: int | None = None):
        self.root = root
        self.env = env
        self.open_files = open_files  # the process's open-files limit (soft and hard), when given
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "APP_DATA_DIR": str(self.root / "outputs"),
               "APP_DATABASE": str(self.root / "outputs" / "jobs.sqlite3"),
               "APP_ENV_FILE": str(self.root / "no.env"), "APP_MODELS": "scripted,offline",
               "APP_HEARTBEAT_SECONDS": "1", "APP_WORKERS": "2", "APP_MAX_ACTIVE_PER_OWNER": "20",
               "APP_MAX_ACTIVE_PER_ADDRESS": "100",  # the tests visit from one address; test_web_abuse lowers it
               # Their many jobs at once would each reserve 2 GB of results; tests/hostile sets a quota.
               "APP_MAX_STORAGE_MB_PER_OWNER": "0",
               "APP_SERVER_THREADS": "16", "PYTHONUNBUFFERED": "1",
               # the repository's, as `make run` has them (the defaults are relative to the server's folder)
               "AGENT_SANDBOX_MY_FILES": str(REPO / "my_files"),
               "APP_SAMPLE_FILE": str(REPO / "samples" / "plate_reader.csv"), **self.env}
        self.log = open(self.root / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "frontend", "--port", str(self.port)],
                                     cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=self._limit_open_files if self.open_files else None)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.read_log()}")
            try:
                requests.get(self.base + "/api/session", timeout=1)
                return self
            except (requests.ConnectionError, requests.Timeout):  # listening before the app is ready
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.read_log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def _limit_open_files(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def restart_on_same_data(self) -> Server:
        again = type(self)(self.root, self.env)
        return again.start()

    def read_log(self) -> str:
        return (self.root / f"server-{self.port}.log").read_text(errors="replace")

    def client(self, source: str | None = None, **headers) -> Client:
        return Client(self.base, headers, source)


class Runner(Server):
    """`python -m frontend --role runner` in the same kind of folder: it runs jobs and has no port
    (`port` only names its log); ready once it says so in its log."""

    def start(self) -> Runner:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "APP_DATA_DIR": str(self.root / "outputs"),
               "APP_DATABASE": str(self.root / "outputs" / "jobs.sqlite3"),
               "APP_ENV_FILE": str(self.root / "no.env"), "APP_MODELS": "scripted,offline",
               "APP_WORKERS": "2", "PYTHONUNBUFFERED": "1", **self.env}
        self.log = open(self.root / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "frontend", "--role", "runner"], cwd=self.root,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while "this process runs jobs as runner" not in self.read_log():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"runner did not start: {self.read_log()}")
            time.sleep(0.1)
        return self

    def holder(self) -> str:
        """The runner id it holds job leases under (in each job's `runner`)."""
        return self.read_log().split("this process runs jobs as runner ", 1)[1].split()[0]


class SourceAddress(requests.adapters.HTTPAdapter):
    """Connections from a given local address: 127.0.0.2, 127.0.0.3... are other client
    addresses on the loopback interface, so per-address limits can be tested on one machine."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def open_stream(port: int, path: str, cookie: str, source: str) -> tuple[socket.socket, int, str]:
    """GET an event stream on a raw socket from `source`; returns (socket, status, response head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    text = head.decode(errors="replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return sock, status, text


class Client:
    """One visitor: its own cookie jar (so its own identity) and CSRF token; `source`: its address."""

    def __init__(self, base: str, headers: dict[str, str] | None = None, source: str | None = None):
        self.base = base
        self.http = requests.Session()
        if source:
            self.http.mount("http://", SourceAddress(source))
        self.http.headers.update(headers or {})
        self.csrf = self.http.get(base + "/api/session", timeout=10).json()["csrf_token"]

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.http.post(self.base + path, headers=headers, timeout=kw.pop("timeout", 60), **kw)

    def submit(self, actions: list[dict] | None = None, files: dict[str, bytes] | None = None,
               **data) -> requests.Response:
        files = files if files is not None else {"data.csv": b"a,b\n1,2\n3,4\n"}
        form = {"model": "scripted", "script": json.dumps(actions or []), **data}
        return self.post("/api/jobs", data=form, files=[("files", (n, b)) for n, b in files.items()])

    def events(self, job_id: str, after: int | None = None, last_event_id: int | None = None,
               stop_after: int | None = None, timeout: float = 60) -> list[dict]:
        """Read the SSE stream: a list of {id, event, data}; ends at `event: end` or after stop_after events."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        params = {"after": after} if after is not None else {}
        out: list[dict] = []
        with self.http.get(f"{self.base}/api/jobs/{job_id}/events", headers=headers, params=params,
                           stream=True, timeout=timeout) as resp:
            assert resp.status_code == 200, resp.text
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            frame: dict = {}
            for line in resp.iter_lines(decode_unicode=True):
                if line == "":
                    if "event" in frame:
                        out.append(frame)
                        if frame["event"] == "end" or (stop_after and len(out) >= stop_after):
                            return out
                    frame = {}
                elif line.startswith(":"):
                    out.append({"comment": line})
                else:
                    key, _, value = line.partition(": ")
                    if key == "data":
                        frame["data"] = json.loads(value)
                    elif key == "id":
                        frame["id"] = int(value)
                    elif key == "event":
                        frame["event"] = value
        return out

    def wait_for_event(self, job_id: str, predicate, timeout: float = 60) -> dict:
        """Follow the stream until an event matches (the matching event is returned)."""
        deadline = time.time() + timeout
        with self.http.get(f"{self.base}/api/jobs/{job_id}/events", stream=True, timeout=timeout) as resp:
            frame: dict = {}
            for line in resp.iter_lines(decode_unicode=True):
                if time.time() > deadline:
                    break
                if line == "" and "event" in frame:
                    if frame["event"] == "end":
                        break
                    if predicate(frame):
                        return frame
                    frame = {}
                elif line.startswith("data: "):
                    frame["data"] = json.loads(line[6:])
                elif line.startswith("event: "):
                    frame["event"] = line[7:]
                elif line.startswith("id: "):
                    frame["id"] = int(line[4:])
        raise AssertionError("the awaited event never came")


def only_events(frames: list[dict]) -> list[dict]:
    return [f for f in frames if "event" in f and f["event"] != "end"]


def sandbox_processes(job_id: str) -> list[int]:
    """PIDs of the job's jail: in its cgroup (named after the job, when run as root)
    or with a command line that mentions the job."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if f"-{job_id[:40]}-" in cgroup or (job_id.encode() in cmdline and b"agent_sandbox" in cmdline):
            pids.append(int(entry.name))
    return pids


def browser_context(browser, server: Server, client: Client | None = None, **options):
    """A browser context that is `client` (shares its session cookie), or a new visitor."""
    context = browser.new_context(**options)
    if client is not None:
        context.add_cookies([{"name": k, "value": v, "url": server.base} for k, v in client.http.cookies.items()])
    return context


def wait_finished(client: Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ACTIVE:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


class StandInSandbox(Sandbox):
    """No agent process: plays a scripted job's visible effects through the real run lifecycle.

    `write_file` actions write their file to the outputs, other actions print
    their command; then the run finishes as the script says. For route tests,
    which exercise the web app, not sandboxes (the backends have their own).
    """

    def __init__(self, spec: RunSpec, folder: Path):
        self.spec, self.folder = spec, folder

    def start(self, run) -> Streams:
        writer_out = io.StringIO()
        writer = ev.EventWriter(writer_out)
        writer.emit(ev.RUN_STARTED, {"environment": "stand-in", "model": self.spec.model})
        status, reason = "succeeded", ""
        for step, action in enumerate(json.loads(self.spec.env.get("AGENT_SCRIPT", "[]")), start=1):
            if action["kind"] == "write_file":
                (self.folder / action["path"]).parent.mkdir(parents=True, exist_ok=True)
                (self.folder / action["path"]).write_text(action["content"])
                writer.emit(ev.FILE_WRITTEN, {"path": action["path"]}, step=step)
            elif action["kind"] == "finish":
                status, reason = action.get("status", "succeeded"), action.get("message", "")
                break
            else:
                writer.emit(ev.OUTPUT, {"stream": "stdout", "text": action.get("command", "")}, step=step)
        writer.emit(ev.RUN_FINISHED, {"status": status, "reason": reason})
        return Streams(writer_out.getvalue().splitlines(), [])

    def wait(self) -> int:
        return 0

    def outputs(self) -> DirectorySource:
        return DirectorySource(self.folder)


class StandInBackend(Backend):
    name = "stand-in"

    def __init__(self, scratch: Path):
        self.scratch = scratch

    def sandbox(self, spec: RunSpec) -> StandInSandbox:
        folder = self.scratch / spec.job_id
        folder.mkdir(parents=True)
        return StandInSandbox(spec, folder)


class SlowClients:
    """A slow-client attack: `count` connections, `per_address` of them from each of 127.0.2.1,
    127.0.2.2, ...; each sends a request line, then one header line every `every` seconds, and
    one cut off comes back at once. `run(stop)` goes on until `stop` is set, then returns what it
    saw: 408s, 503s, connections closed, and those the server held past `too_long` seconds from
    their first byte."""

    def __init__(self, port: int, count: int, per_address: int, every: float = 10.0, too_long: float = 15.0):
        self.port, self.count, self.per_address, self.every, self.too_long = port, count, per_address, every, too_long

    def run(self, stop) -> dict[str, int]:
        sel = selectors.DefaultSelector()
        conns: dict[socket.socket, dict] = {}
        seen = {"408": 0, "503": 0, "closed": 0, "held_too_long": 0}

        def connect(slot: int) -> None:
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((f"127.0.2.{slot // self.per_address + 1}", 0))
            sock.connect_ex(("127.0.0.1", self.port))
            sel.register(sock, selectors.EVENT_READ, slot)
            conns[sock] = {"first": None, "last": 0.0}

        for slot in range(self.count):
            connect(slot)
        while not stop.is_set():
            now = time.monotonic()
            for sock, st in conns.items():
                if now - st["last"] >= self.every:
                    try:
                        sock.send(b"X-Slow: yes\r\n" if st["first"] else b"GET / HTTP/1.1\r\n")
                    except OSError:
                        continue
                    st["last"], st["first"] = now, st["first"] or now
            for key, _ in sel.select(0.5):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                seen["408"] += data.startswith(b"HTTP/1.1 408")
                seen["503"] += data.startswith(b"HTTP/1.1 503")
                seen["closed"] += 1
                first = conns[sock]["first"]
                seen["held_too_long"] += first is not None and time.monotonic() - first > self.too_long
                sel.unregister(sock)
                sock.close()
                del conns[sock]
                connect(key.data)  # an attacker comes back
        for sock in conns:
            sock.close()
        return seen
