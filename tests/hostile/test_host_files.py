"""Issue 26 F13: root wrote the sandbox's resolv.conf as /tmp/agent-sandbox-resolv.<pid>, following
links: a local user who planted a link there got any root file overwritten and made 0644 (and a
link at /tmp/agent-sandbox-resolv.conf was bound into the sandbox as its /etc/resolv.conf). Files
root writes for a sandbox are now created in a private folder (isolation/hostfiles.py) with
O_NOFOLLOW|O_EXCL. Measured as root: a victim file's content and mode after the host wrote the
resolv.conf with links planted at every path it used, and what the sandbox sees."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from agent_sandbox import events as ev
from agent_sandbox.isolation import netjail
from agent_sandbox.spec import Limits
from agent_sandbox.testing.support import make_spec, shell
from tests.backends import *  # noqa: F403 (`backend`: each backend in turn)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the host writes these files as root")


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Links to two root-only victims at every name the host has used in its temp folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    victims = []
    for name in (f"agent-sandbox-resolv.{os.getpid()}", "agent-sandbox-resolv.conf"):
        victim = tmp_path / f"victim-{len(victims)}"
        victim.write_text("precious root data\n")
        victim.chmod(0o600)
        (tmp / name).symlink_to(victim)
        victims.append(victim)
    return victims


def untouched(victims) -> list[str]:
    return [f"{v.name}: {v.read_text()!r} mode {stat.S_IMODE(v.stat().st_mode):o}" for v in victims]


def test_root_writes_no_file_through_a_planted_link(planted):
    path = netjail.resolv_conf()
    seen = untouched(planted)
    print(f"\nF13: victims after the host wrote the resolv.conf: {seen}")
    assert seen == [f"victim-{i}: 'precious root data\\n' mode 600" for i in range(2)]
    assert path.read_text() == netjail.RESOLV_CONF and not path.is_symlink()
    folder = os.lstat(path.parent)
    assert folder.st_uid == 0 and not folder.st_mode & 0o022, "a folder nobody else can write to"


def test_a_planted_link_is_not_what_the_sandbox_gets(backend, planted, tmp_path, recorder):
    if netjail.available():
        pytest.skip(f"no opt-in network here: {netjail.available()}")
    if backend.name == "modal":   # the emulator runs in its own process, with its own temp folder
        pytest.skip("the emulator's process writes its own resolv.conf")
    spec = make_spec(tmp_path, [shell("cat /etc/resolv.conf")], network=True,
                     limits=Limits(run_timeout=120, command_timeout=60, idle_timeout=60, disk_mb=128))
    result = backend.run(spec, recorder)
    assert result.status == ev.SUCCEEDED, result.reason
    text = "".join(e["data"].get("text", "") for e in recorder.of_type(ev.OUTPUT))
    assert netjail.RESOLV_CONF in text and "precious" not in text
    assert untouched(planted) == [f"victim-{i}: 'precious root data\\n' mode 600" for i in range(2)]


def test_a_private_folder_someone_else_made_is_not_used(tmp_path, monkeypatch):
    from agent_sandbox.isolation import hostfiles
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 12345, 12345)
    mine = tmp_path / "mine"
    monkeypatch.setattr(hostfiles, "ROOTS", (str(theirs), str(mine)))
    path = hostfiles.write_private("resolv.conf", "nameserver 10.0.2.3\n")
    assert path.parent == mine and os.lstat(mine).st_uid == 0 and stat.S_IMODE(os.lstat(mine).st_mode) == 0o711
    assert list(theirs.iterdir()) == []
