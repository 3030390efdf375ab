"""`python -m frontend [--role all|web|runner] [--host H] [--port P]`: the app on its production server
(see server.py), or (`--role runner`) a process that only runs jobs.

Roles let web processes scale with viewers and runners with jobs: `web`
serves pages, the API and event streams; `runner` runs jobs and listens on no
port; `all` (the default) is both, one process for one machine.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from agent_sandbox.settings import SettingError
from frontend.app import create_app, create_runner
from frontend.database import DatabaseUnavailable
from frontend.guard import ConnectionLimits, Networks
from frontend.server import CannotListen, listen, make_server, raise_open_files_limit, serve
from frontend.settings import ROLES, Settings

log = logging.getLogger("frontend")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """One level for every logger of the server (ours, Flask's, the SDKs')."""
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise SettingError(f"APP_LOG_LEVEL={level!r} is not valid: expected DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stdout, force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend",
                                     description="Serve the dataset-processing web app.")
    parser.add_argument("--host", help="address to listen on (default APP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default APP_PORT or 5000)")
    parser.add_argument("--role", choices=ROLES, help="web: pages, API and event streams; runner: runs jobs "
                        "(no port); all: both (default APP_ROLE or all)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(**({"role": args.role} if args.role else {}))
        configure_logging(settings.log_level)
    except SettingError as exc:  # before logging is set up (its level is a setting too): one plain line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.serves_pages():
        try:
            return run_jobs_only(settings)
        except DatabaseUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    # The port first: a second server started by mistake stops here, before it touches
    # the database (where it could disturb the jobs of the one already running).
    raise_open_files_limit()  # before the caps are worked out from it
    limits = ConnectionLimits(settings.socket_caps()[0], settings.max_connections_per_address,
                              settings.header_timeout, Networks(settings.trusted_proxies))
    server = make_server(None, host, port, settings.server_threads, settings.server_max_threads, limits)
    try:
        listen(server)
    except CannotListen as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        app = create_app(settings)
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        server.stop()
        return 1
    server.wsgi_app = app
    limits.streams = lambda: app.extensions["jobs"].streams.total  # event streams are sockets too

    def stop(signum, frame):
        # The jobs first, while the server still answers (a cancel sent meanwhile is honoured,
        # pages show the jobs ending), then the server.
        def stop_all() -> None:
            try:
                app.extensions["jobs"].executor.stop()
            finally:
                server.stop()

        threading.Thread(target=stop_all, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving on http://%s:%s/ (backends %s, models %s, jobs in %s); this process %s", host, port,
             ",".join(settings.backends), ",".join(settings.models), app.extensions["jobs"].store.describe(),
             app.extensions["jobs"].executor.role())
    try:
        serve(server)
    finally:
        app.extensions["jobs"].executor.stop()
        app.extensions["jobs"].hub.stop()
        app.extensions["jobs"].store.close()
    return 0


def run_jobs_only(settings: Settings) -> int:
    """`--role runner`: run jobs until SIGTERM/SIGINT, then stop them (as the server does)."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    executor = create_runner(settings)
    executor.start()
    log.info("runner for %s (backends %s, models %s, %d workers); this process %s", executor.store.describe(),
             ",".join(settings.backends), ",".join(settings.models), settings.workers, executor.role())
    while not stopping.wait(1.0):
        pass
    executor.stop()
    executor.store.close()
    log.info("runner stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
