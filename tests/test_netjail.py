"""The opt-in network: the agent's commands reach the internet, never the host
(its loopback, its own addresses, its private networks)."""

from __future__ import annotations

import socket
import threading

import pytest

from agent_sandbox import events as ev
from agent_sandbox.backends import get_backend
from agent_sandbox.isolation import netjail
from tests.conftest import make_spec

PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(8)
    try:
        s.connect((host, int(port))); print("REACHED", target)
    except Exception as exc:
        print("BLOCKED", target, type(exc).__name__)
"""


@pytest.fixture
def host_service():
    """A TCP service on every address of the host (as a web app on 0.0.0.0 would be)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(16)
    accepted: list = []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def targets(port: int) -> list[str]:
    own = [cidr.split("/")[0] for cidr in netjail.host_addresses()]  # its addresses and gateways
    return [f"{ip}:{port}" for ip in ["127.0.0.1", "10.0.2.2", *own]] + ["pypi.org:443"]


def outputs(recorder) -> str:
    return "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))


@pytest.fixture(params=["local", "docker"])
def backend(request):
    if request.param == "docker":
        from tests.docker_engine import require_docker
        return require_docker()
    return get_backend("local")


@pytest.mark.skipif(bool(netjail.available()), reason=netjail.available() or "ok")
def test_opt_in_network_reaches_the_internet_but_never_the_host(backend, tmp_path, recorder, host_service):
    probe = [{"kind": "python", "code": PROBE.replace("sys.argv[1:]", repr(targets(host_service)))}]
    result = backend.run(make_spec(tmp_path, probe, network=True), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = outputs(recorder)
    assert "REACHED pypi.org:443" in text, text
    assert text.count("BLOCKED") == len(targets(host_service)) - 1, text


def test_without_the_opt_in_there_is_no_network(backend, tmp_path, recorder, host_service):
    probe = [{"kind": "python", "code": PROBE.replace("sys.argv[1:]", repr(targets(host_service)))}]
    result = backend.run(make_spec(tmp_path, probe), recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = outputs(recorder)
    assert "REACHED" not in text and text.count("BLOCKED") == len(targets(host_service)), text
