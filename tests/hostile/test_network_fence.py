"""Issue 26 F20: the opt-in network's fence let a sandbox route to 168.63.129.16 (a cloud
host-agent address: Azure's wireserver) through slirp, and not all of link-local. Measured on every
backend with the opt-in network: which of those addresses the fence refuses at once (a
`prohibit` route: EACCES) and which it lets through to the outside (a timeout, a refusal or an
answer from beyond)."""

from __future__ import annotations

import json

import pytest

from agent_sandbox import events as ev
from agent_sandbox.isolation import netjail
from agent_sandbox.spec import Limits
from agent_sandbox.testing.support import make_spec, python
from tests.backends import *  # noqa: F403 (`backend`: each backend in turn)

TARGETS = ["168.63.129.16", "169.254.169.254", "169.254.0.1", "169.254.255.254", "169.254.170.2"]
PROBE = r'''
import errno, json, socket
seen = {}
for address in TARGETS:
    sock = socket.socket()
    sock.settimeout(3)
    try:
        sock.connect((address, 80))
        seen[address] = "connected"
    except OSError as exc:
        seen[address] = "timeout" if isinstance(exc, TimeoutError) else errno.errorcode.get(exc.errno, str(exc))
    finally:
        sock.close()
print("FENCE", json.dumps(seen))
'''


def test_the_fence_refuses_cloud_host_agents_and_all_of_link_local(backend, tmp_path, recorder):
    if netjail.available():
        pytest.skip(f"no opt-in network here: {netjail.available()}")
    spec = make_spec(tmp_path, [python(f"TARGETS = {TARGETS!r}\n" + PROBE)], network=True,
                     limits=Limits(run_timeout=120, command_timeout=60, idle_timeout=60, disk_mb=128))
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    line = next(line for e in recorder.of_type(ev.OUTPUT) for line in e["data"]["text"].splitlines()
                if line.startswith("FENCE "))
    seen = json.loads(line[6:])
    print(f"\nF20 {backend.name}: {seen}")
    assert seen == {address: "EACCES" for address in TARGETS}, "each refused by the fence itself"
    assert "168.63.129.16" not in " ".join(netjail.public_ranges()), "nor in Modal's allowlist"
