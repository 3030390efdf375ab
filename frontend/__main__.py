"""`python -m frontend [--host H] [--port P]`: the app on its production server (see server.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from frontend.app import create_app
from frontend.server import make_server, serve
from frontend.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend",
                                     description="Serve the dataset-processing web app.")
    parser.add_argument("--host", help="address to listen on (default APP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default APP_PORT or 5000)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    app = create_app(settings)
    server = make_server(app, host, port, settings.server_threads, settings.server_max_threads)

    def stop(signum, frame):
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving on http://{host}:{port}/ (backends {','.join(settings.backends)}, "
          f"models {','.join(settings.models)})", flush=True)
    try:
        serve(server)
    finally:
        app.extensions["jobs"].executor.stop()
        app.extensions["jobs"].hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
