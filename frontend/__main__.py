"""`python -m frontend [--host H] [--port P]`: the app on a production-grade threaded server.

Server choice: cheroot (CherryPy's WSGI server). Every open event stream holds
one thread, so the pool starts small and a watcher grows it on demand up to
APP_SERVER_MAX_THREADS; idle keep-alive connections wait in cheroot's selector
and hold no thread. Plain threads (no gevent) keep the Modal and Docker SDKs
working as they are documented to.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from cheroot import wsgi

from frontend.app import create_app
from frontend.settings import Settings


def grow_pool_on_demand(server: wsgi.Server, spare: int = 32, step: int = 128) -> None:
    """Keep at least `spare` idle threads so a new stream never waits for one."""
    pool = server.requests
    while server.ready:
        if pool.idle < spare and len(pool._threads) < pool.max:
            pool.grow(step)
        else:
            time.sleep(0.05)


def raise_open_files_limit() -> None:
    # One descriptor per open stream: lift the soft limit to the hard one.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="address to listen on (default APP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default APP_PORT or 5000)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    app = create_app(settings)
    server = wsgi.Server((host, port), app, numthreads=settings.server_threads,
                         max=settings.server_max_threads, request_queue_size=4096, timeout=30,
                         shutdown_timeout=2, server_name="sandbox-app")
    server.keep_alive_conn_limit = settings.server_max_threads
    raise_open_files_limit()
    threading.stack_size(1024 * 1024)  # thousands of stream threads: keep their stacks small

    def stop(signum, frame):
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.prepare()
    threading.Thread(target=grow_pool_on_demand, args=(server,), name="pool-grower", daemon=True).start()
    print(f"serving on http://{host}:{server.bind_addr[1]}/ (backends {','.join(settings.backends)}, "
          f"models {','.join(settings.models)})", flush=True)
    try:
        server.serve()
    finally:
        app.extensions["jobs"].executor.stop()
        app.extensions["jobs"].hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
