"""Start bubblewrap as the unprivileged sandbox user, from root (agent_sandbox.isolation.jail).

    python -I -S launch.py PLAN_JSON BWRAP [BWRAP ARGS...]

bubblewrap started by root maps root inside to root outside, so root must not
start it. This launcher, started by root, does the few things only root can
do and then becomes the sandbox user for good before it runs bubblewrap:

1. joins the run's cgroups (their limits then hold for everything the jail
   starts, and nothing in it can leave them);
2. in a mount namespace of its own (gone when the jail is), binds each folder
   the sandbox user could not reach (a Python under /root, a workspace in a
   private folder) onto an empty folder it can reach, the "stage";
3. drops every group, then its uid and gid (no capabilities survive that),
   asks for SIGKILL when the process that started it dies (after the uid
   change, which would clear it; exec keeps it) and checks that process is
   still its parent (it may have died before the request), then execs
   bubblewrap, which builds the jail from the stage as that user.

Standard library only, run with -I -S: nothing from the environment or from
site-packages runs as root here. A failure is one line on stderr, exit 126.
"""

import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
PR_SET_PDEATHSIG = 1
MS_REC, MS_BIND, MS_PRIVATE = 0x4000, 0x1000, 0x40000


def main(argv: list[str]) -> None:
    plan, command = json.loads(argv[1]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    for procs in plan["cgroups"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    check(libc.unshare(CLONE_NEWNS), "unshare the mount namespace")
    # Nothing mounted below may reach the host's namespace.
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    for source, target in plan["stage"]:
        check(libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"bind {source}")
    uid, gid = plan["uid"], plan["gid"]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise OSError(f"could not become uid {uid}")
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "ask to die with the parent")
    if os.getppid() != plan["parent"]:
        raise OSError("the process that started the jail is gone")
    os.execv(command[0], command)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Exception as exc:  # one line for the run's log; the host sees exit 126
        print(f"jail: {exc}", file=sys.stderr, flush=True)
        sys.exit(126)
