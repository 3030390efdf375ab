"""Opt-in outbound network for a sandbox that still cannot reach the host.

A sandbox starts in its own network namespace with nothing but loopback. With
the opt-in (RunSpec.network), `UserNetwork` gives that namespace user-mode
networking: slirp4netns (Debian package `slirp4netns`) makes the sandbox's
connections from the host as ordinary sockets, with host loopback disabled
(10.0.2.2 leads nowhere). Before it starts, the namespace gets `prohibit`
routes for every private, link-local, loopback and reserved range and for
each of the host's own addresses, so neither the host's services (the web
app, the Modal emulator's admin API, a local model server) nor anything on
its private networks can be reached; the public internet can (pip install).
DNS goes to slirp's resolver at 10.0.2.3 (see RESOLV_CONF).

The routes are set from the host (root, nsenter) in a namespace whose
processes hold no capabilities, so nothing inside can undo them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from agent_sandbox.isolation.hostfiles import write_private

# Never reachable from a sandbox: private (RFC 1918, CGNAT), loopback, link-local (every
# cloud's metadata service at 169.254.169.254 and the like), "this network", benchmarking,
# multicast and reserved ranges, and the cloud host agents at public addresses (Azure's
# wireserver, 168.63.129.16); the host's own addresses and its gateways are added at run time.
BLOCKED = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
           "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
           "168.63.129.16/32")
SLIRP_DNS = "10.0.2.3"
RESOLV_CONF = f"nameserver {SLIRP_DNS}\n"
READY_TIMEOUT = 10.0


class NetworkUnavailable(RuntimeError):
    pass


def host_addresses() -> list[str]:
    """Every IPv4 address of this host's interfaces and its gateways, as /32 routes."""
    def ip(*args: str) -> list[list[str]]:
        try:
            out = subprocess.run(["ip", "-4", *args], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [line.split() for line in out.splitlines()]
    found = {words[3].split("/")[0] for words in ip("-o", "addr", "show") if len(words) > 3}
    found |= {words[words.index("via") + 1] for words in ip("route", "show") if "via" in words[:-1]}
    return sorted(f"{address}/32" for address in found)


def public_ranges() -> list[str]:
    """The IPv4 internet less BLOCKED, as CIDRs: an allowlist for Modal's outbound_cidr_allowlist."""
    import ipaddress
    ranges = [ipaddress.ip_network("0.0.0.0/0")]
    for cidr in BLOCKED:
        blocked = ipaddress.ip_network(cidr)
        ranges = [part for r in ranges
                  for part in (r.address_exclude(blocked) if blocked.subnet_of(r) else
                               ([] if r.subnet_of(blocked) else [r]))]
    return [str(r) for r in sorted(ranges)]


def resolv_conf() -> Path:
    """A resolv.conf naming slirp's resolver, to bind at /etc/resolv.conf in the sandbox (written
    where no other user can plant a link: hostfiles)."""
    return write_private("resolv.conf", RESOLV_CONF)


def available() -> str:
    """"" when the opt-in network can be given here, else why not."""
    missing = [tool for tool in ("slirp4netns", "nsenter", "ip") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (Debian: apt-get install slirp4netns iproute2 util-linux)"
    if os.geteuid() != 0:
        return "the opt-in network needs the host side to run as root (to set the sandbox's routes)"
    return ""


class UserNetwork:
    """User-mode networking for the network namespace of `pid`, until `stop()`."""

    def __init__(self, pid: int):
        self.pid = pid
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        why = available()
        if why:
            raise NetworkUnavailable(why)
        netns = f"/proc/{self.pid}/ns/net"
        for cidr in BLOCKED + tuple(host_addresses()):
            done = subprocess.run(["nsenter", f"--net={netns}", "ip", "route", "add", "prohibit", cidr],
                                  capture_output=True, text=True, timeout=10)
            if done.returncode != 0 and "File exists" not in done.stderr:
                raise NetworkUnavailable(f"could not fence the sandbox's network ({cidr}): {done.stderr.strip()}")
        ready_r, ready_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-seccomp",
                 f"--ready-fd={ready_w}", "--netns-type=path", f"/proc/{self.pid}/ns/net", "tap0"],
                pass_fds=(ready_w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
            os.close(ready_w)
            ready_w = -1
            if not _wait_readable(ready_r, READY_TIMEOUT) or os.read(ready_r, 1) != b"1":
                err = self._end()
                raise NetworkUnavailable(f"slirp4netns did not come up: {err or 'no answer'}")
        finally:
            os.close(ready_r)
            if ready_w >= 0:
                os.close(ready_w)

    def stop(self) -> None:
        self._end()

    def _end(self) -> str:
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        lines = (err or b"").decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


def _wait_readable(fd: int, timeout: float) -> bool:
    import select
    return bool(select.select([fd], [], [], timeout)[0])


class JailNetwork:
    """The opt-in network of one bubblewrap jail: bwrap names the jail's pid on one
    pipe (--info-fd) and holds the command on another (--block-fd) until the
    network is up, so the first command already has it.

    Each descriptor is closed exactly once (`_open` tracks them): closing a number
    twice could close another thread's file that reused it."""

    def __init__(self):
        self._info = os.pipe()
        self._block = os.pipe()
        self._open = {*self._info, *self._block}
        self._lock = threading.Lock()
        self.network: UserNetwork | None = None

    def options(self) -> list[str]:
        return ["--info-fd", str(self._info[1]), "--block-fd", str(self._block[0])]

    @property
    def fds(self) -> tuple[int, int]:
        """bwrap's ends: pass them to its process."""
        return self._info[1], self._block[0]

    def connect(self) -> None:
        """Once bwrap runs: the network for its namespace, then let the command start.
        Raises NetworkUnavailable (the caller stops the jail)."""
        import json
        self._close(*self.fds)   # ours no more: EOF on the info pipe once bwrap is done with it
        try:
            chunks = []
            while chunk := os.read(self._info[0], 65536):
                chunks.append(chunk)
            pid = int(json.loads(b"".join(chunks))["child-pid"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise NetworkUnavailable(f"bubblewrap did not say which process is the jail ({exc})") from None
        finally:
            self._close(self._info[0])
        self.network = UserNetwork(pid)
        self.network.start()
        os.write(self._block[1], b"1")
        self._close(self._block[1])

    def close(self) -> None:
        """The jail is gone (or never started): stop the network, close what is left."""
        if self.network is not None:
            self.network.stop()
            self.network = None
        self._close(*self._info, *self._block)

    def _close(self, *fds: int) -> None:
        with self._lock:
            for fd in fds:
                if fd in self._open:
                    self._open.discard(fd)
                    os.close(fd)
