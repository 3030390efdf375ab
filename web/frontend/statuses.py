"""How each status looks on the page: the statuses as data for templates and the page's JavaScript.

The statuses themselves are the library's one list (agent_sandbox.events.Status);
their tones (app.css has one class per tone) are the web app's own.
"""

from __future__ import annotations

from typing import Any

from agent_sandbox.events import ACTIVE, FINAL, Status

TONES = {Status.QUEUED: "waiting", Status.STARTING: "waiting", Status.COLLECTING: "waiting",
         Status.RUNNING: "busy", Status.SUCCEEDED: "ok", Status.CANCELLED: "warn",
         **{s: "bad" for s in FINAL - {Status.SUCCEEDED, Status.CANCELLED}}}


def statuses_for_pages() -> dict[str, Any]:
    """The statuses as plain data, for templates and the page's JavaScript."""
    return {"active": sorted(ACTIVE), "final": sorted(FINAL), "tones": {str(s): t for s, t in TONES.items()}}
