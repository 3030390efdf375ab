"""python -m modal_emulator --port PORT [--http-port P] [--state DIR] [--faults SPEC]
[--create-rate R] [--runtime auto|bwrap|docker] [--python-slim IMAGE] [--docker-image IMAGE]
[--sandbox-max-processes N] [--sandbox-disk-mb MB] [--sandbox-memory-mb MB]
[--ended-task close|not_found|unreachable] [--fail-read GLOB] [--schedule-delay S]
[--commit-delay S] [--replay FILE] [-v]

SIGTERM or SIGINT: every sandbox is killed (no volume commits) and the process
exits within seconds, whatever the sandboxes did; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from modal_emulator.image_builds import DEFAULT_PYTHON_SLIM
from modal_emulator.replay import Recording
from modal_emulator.server import Emulator
from modal_emulator.state import CLOSE, ENDED_TASK_MODES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modal_emulator",
                                     description="Local emulator of the Modal API our Modal backend uses.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50551, help="gRPC port (0: any free port)")
    parser.add_argument("--http-port", type=int, default=0, help="blob/volume/admin HTTP port (0: any free port)")
    parser.add_argument("--state", default=None, help="folder for uploads, volumes and sandboxes (default: a temp dir)")
    parser.add_argument("--faults", default=os.environ.get("MODAL_EMULATOR_FAULTS", ""),
                        help='failures to inject, e.g. "SandboxCreateV2:UNAVAILABLE:2"')
    parser.add_argument("--create-rate", type=float, default=0.0,
                        help="sandbox creations allowed per second, as Modal rate limits them (0: no limit)")
    parser.add_argument("--runtime", choices=("auto", "bwrap", "docker", "replay"), default="auto",
                        help="run sandboxes in Docker containers of images built from each definition's "
                             "recipe, or in bubblewrap jails over this host's environment (auto: Docker when "
                             "an engine answers and has the --python-slim stand-in); replay: start nothing, "
                             "play --replay's recorded agent run in each (scale benchmarks)")
    parser.add_argument("--replay", default="", metavar="RECORDING",
                        help="with --runtime replay: the recorded agent run (python -m modal_emulator.replay record)")
    parser.add_argument("--python-slim", default=DEFAULT_PYTHON_SLIM,
                        help="local stand-in for Docker Hub's python:<series>-slim-<codename>, debian_slim's "
                             "base ({series} and {codename} are filled in)")
    parser.add_argument("--docker-image", default="",
                        help="run every sandbox in this local image instead of its definition's build (tests)")
    parser.add_argument("--sandbox-max-processes", type=int, default=4096,
                        help="processes (and threads) per sandbox; Modal takes no such setting for Sandboxes")
    parser.add_argument("--sandbox-disk-mb", type=int, default=4096,
                        help="writable space per sandbox (its mounts, /tmp and volume copies together)")
    parser.add_argument("--sandbox-memory-mb", type=int, default=8192,
                        help="memory per sandbox when it asks for no hard limit (memory=(request, limit))")
    parser.add_argument("--ended-task", choices=ENDED_TASK_MODES, default=CLOSE,
                        help="what exec output streams and calls get once their sandbox has ended: close "
                             "cleanly, or fail as when the task (not_found) or its worker (unreachable) is gone")
    parser.add_argument("--fail-read", default="", metavar="GLOB",
                        help="volume files whose block downloads fail (HTTP 500, Modal's ExecutionError), "
                             "e.g. '*.csv'")
    parser.add_argument("--schedule-delay", type=float, default=0.0, metavar="SECONDS",
                        help="seconds a new sandbox waits for a worker: no task id meanwhile, execs wait")
    parser.add_argument("--commit-delay", type=float, default=0.0, metavar="SECONDS",
                        help="seconds a volume's commit lags the end of its sandbox (Modal promises no timing)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every RPC")
    args = parser.parse_args(argv)
    # Only our own logger gets DEBUG: the HTTP/2 libraries would log request headers (tokens).
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s modal-emulator %(levelname)s %(message)s")
    logging.getLogger("modal_emulator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    emulator = Emulator(args.host, args.port, args.http_port, args.state, args.faults,
                        args.create_rate, args.runtime, args.docker_image, args.python_slim)
    limits = emulator.state.sandbox_limits
    limits.max_processes, limits.disk_mb = args.sandbox_max_processes, args.sandbox_disk_mb
    limits.memory_mb = args.sandbox_memory_mb
    emulator.state.ended_task = args.ended_task
    if args.schedule_delay < 0 or args.commit_delay < 0:
        parser.error("--schedule-delay and --commit-delay are seconds, 0 or more")
    if (args.runtime == "replay") != bool(args.replay):
        parser.error("--runtime replay plays the recording given with --replay (and only it)")
    if args.replay:
        try:
            emulator.state.recording = Recording.load(args.replay)
        except (OSError, ValueError) as exc:
            parser.error(f"--replay: {exc}")
    emulator.state.fail_read = args.fail_read
    emulator.state.schedule_delay, emulator.state.commit_delay = args.schedule_delay, args.commit_delay
    asyncio.run(_serve(emulator))
    return 0


async def _serve(emulator: Emulator) -> None:
    await emulator.start()
    # One machine-readable line on stdout: tests and scripts wait for it.
    print(f"modal-emulator ready grpc={emulator.state.grpc_url} http={emulator.state.http_url} "
          f"runtime={emulator.state.runtime} state={emulator.state.folder}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():   # asked twice: go now
            os._exit(1)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    await emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
