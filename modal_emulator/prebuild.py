"""python -m modal_emulator.prebuild: build the Modal images the tests run, now.

The emulator's Docker runtime builds each Modal image definition for real on
first use (image_builds.py): a minute or two for the agent's image. `make
test` runs this first, through a throwaway emulator and the Modal backend's
own prepare(), so no test waits for a build (and its log is shown here). The
layers are tagged by content: a second run only looks them up.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="modal-emulator-prebuild-") as state:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "modal_emulator", "--port", "0", "--state", state, "--runtime", "docker"],
            stdout=subprocess.PIPE, text=True)
        try:
            ready = emulator.stdout.readline()
            if not ready.startswith("modal-emulator ready"):
                print("prebuild: the emulator did not start", file=sys.stderr)
                return 1
            fields = dict(part.split("=", 1) for part in ready.split()[2:])
            os.environ.update(MODAL_SERVER_URL=fields["grpc"], MODAL_TOKEN_ID="ak-prebuild",
                              MODAL_TOKEN_SECRET="as-prebuild")
            import modal

            from agent_sandbox.backends.modal import ModalBackend

            backend = ModalBackend()
            backend.prepare()                                           # the agent's image
            app = modal.App.lookup(backend.config.app_name, create_if_missing=True)
            modal.Image.debian_slim().build(app)                        # what the emulator's tests use
        finally:
            emulator.terminate()
            emulator.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
