"""Issue 26 F16: Docker kept the container's whole stdout (the host channel) in its json-file
log, on the host's disk and outside `disk_mb` (192 MB seen). The agent's stdout is the channel:
the container has no log (log driver none). Measured: the log's bytes on the host at the end of
a run whose commands printed ~1 MB."""

from __future__ import annotations

import os
import subprocess

from agent_sandbox import events as ev
from agent_sandbox.spec import Limits
from agent_sandbox.testing.support import make_spec, shell
from tests.docker_engine import require_docker

PRINTS = [shell("head -c 19000 /dev/zero | tr '\\0' 'A'; echo") for _ in range(50)]


def test_the_container_keeps_no_log_on_the_host(tmp_path, recorder):
    backend = require_docker()
    seen: dict = {}

    def on_event(event):
        recorder(event)
        if event["type"] == ev.STATUS and event["data"].get("sandbox_id"):
            seen["name"] = event["data"]["sandbox_id"]
        if event["type"] == ev.RUN_FINISHED:   # the container is still there: what did it keep?
            out = subprocess.run([backend.config.docker, "inspect", "--format",
                                  "{{.HostConfig.LogConfig.Type}} {{.LogPath}}", seen["name"]],
                                 capture_output=True, text=True, timeout=30).stdout.split()
            seen["driver"], path = out[0], out[1] if len(out) > 1 else ""
            seen["bytes"] = os.path.getsize(path) if path and os.path.exists(path) else 0

    limits = Limits(run_timeout=120, command_timeout=60, idle_timeout=60, disk_mb=1024, max_steps=60)
    result = backend.run(make_spec(tmp_path, PRINTS, limits=limits), on_event)
    printed = sum(len(e["data"].get("text", "")) for e in recorder.of_type(ev.OUTPUT))
    print(f"\nF16 docker: log driver {seen['driver']}; container log on the host {seen['bytes']:,} bytes "
          f"after commands printed {printed:,} characters")
    assert result.status == ev.SUCCEEDED, result.reason
    assert printed > 900_000, "the commands did print"
    assert seen["driver"] == "none" and seen["bytes"] == 0
