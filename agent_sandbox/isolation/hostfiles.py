"""Files the host writes for a sandbox, in a folder where no other user can plant a link.

Root writing by name in a shared folder like /tmp follows whatever link another local user
planted there: it would overwrite, or chmod, any file of root's, or bind it into a sandbox.
So every such file (the network's resolv.conf, the jail's stages) lives under the first of
ROOTS that is a real folder of this user's that nobody else may write to (checked without
following a link), and a file is created there with O_NOFOLLOW|O_EXCL under a fresh name, then
renamed into place.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

ROOTS = ("/run/agent-sandbox", os.path.join(tempfile.gettempdir(), f"agent-sandbox-{os.geteuid()}"))


def private_root() -> Path:
    """The first of ROOTS (made if missing, 0711) that is this user's alone."""
    for root in ROOTS:
        try:
            os.makedirs(root, mode=0o711, exist_ok=True)
            st = os.lstat(root)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            return Path(root)
    raise OSError(f"no private folder for the sandboxes' files in {', '.join(ROOTS)}")


def write_private(name: str, content: str, mode: int = 0o644) -> Path:
    """`content` as `<private root>/<name>` (readable by the sandbox user at `mode`); unchanged if
    it already holds it. Never follows a link."""
    final = private_root() / name
    try:
        fd = os.open(final, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode) and f.read() == content.encode():
                return final
    except OSError:
        pass
    tmp = final.with_name(f".{name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)   # whatever the umask
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return final
