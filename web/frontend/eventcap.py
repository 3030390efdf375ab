"""A cap on what one run stores in the event log: APP_MAX_EVENTS_PER_JOB events and
APP_MAX_EVENT_MB_PER_JOB megabytes.

What a run prints is the sandbox's to decide, and a hostile one prints without end (once
+287 MB of SQLite in 20 s). Past the cap its events are counted, not stored: the job's log
says so when it happens and, at the run's end, how many events of which types were left
out. The host's own events (status, the outputs' result, model usage) are always stored:
the host makes few of them, and the page needs them. So is the run's first `run_finished`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from agent_sandbox import events as ev

log = logging.getLogger(__name__)
ALWAYS = frozenset({ev.STATUS, ev.RESULT, ev.USAGE})   # the host's own (not RAW: that is the sandbox's)


class EventBudget:
    """Decides, event by event, what one run stores."""

    def __init__(self, job_id: str, max_events: int, max_bytes: int):
        self.job_id, self.max_events, self.max_bytes = job_id, max_events, max_bytes
        self.events = self.bytes = self.dropped_bytes = 0
        self.dropped: Counter[str] = Counter()
        self.finished = False

    def admit(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """What to store for `event`: itself; past the cap nothing (the first time, a warning)."""
        kind = event.get("type", ev.RAW)
        if kind in ALWAYS or (kind == ev.RUN_FINISHED and not self.finished):
            self.finished = self.finished or kind == ev.RUN_FINISHED
            return [event]
        size = len(json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str))
        if not self.dropped and self.events < self.max_events and self.bytes + size <= self.max_bytes:
            self.events, self.bytes = self.events + 1, self.bytes + size
            return [event]
        first = not self.dropped
        self.dropped[kind] += 1
        self.dropped_bytes += size
        if not first:
            return []
        log.warning("job %s: its log reached its limit (%d events, %.1f MB): the rest of the run is counted, "
                    "not stored", self.job_id, self.events, self.bytes / 2**20)
        return [ev.make_event(ev.WARNING, {"message": (
            f"this run's log reached its limit of {self.max_events:,} events or {self.max_bytes / 2**20:g} MB: "
            "what it prints from here on is not stored (the count comes at the end)")})]

    def summary(self) -> dict[str, Any] | None:
        """The log's last word on what was left out (None if nothing was)."""
        if not self.dropped:
            return None
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in self.dropped.most_common())
        return ev.make_event(ev.WARNING, {"message": (
            f"not stored: {sum(self.dropped.values()):,} events ({self.dropped_bytes / 2**20:.1f} MB) past the "
            f"log's limit: {kinds}")})
