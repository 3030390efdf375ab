"""Host-side backends: each starts one sandbox per run and streams its events.

A backend is looked up by name and imported only when used, so the `modal` and
`docker` SDKs load only for their own backend.

    backend = get_backend("local")
    result = backend.run(spec, on_event, cancel=threading.Event())

`run` blocks until the sandbox is gone. It calls `on_event(event)` for every
event as it happens (agent events, raw lines, host status events), enforces
spec.limits (whole run, no output), collects outputs into spec.results with
manifest.json, and always cleans up. Setting `cancel` stops the sandbox for
real and the run ends with status "cancelled".
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable, Protocol

from agent_sandbox.spec import RunResult, RunSpec

EventCallback = Callable[[dict[str, Any]], None]

# name -> "module:Class"; built-in backends use the same registry as plugins would.
BACKENDS: dict[str, str] = {
    "local": "agent_sandbox.backends.local:LocalBackend",
    "docker": "agent_sandbox.backends.docker:DockerBackend",
    "modal": "agent_sandbox.backends.modal:ModalBackend",
}


class Backend(Protocol):
    name: str

    def run(self, spec: RunSpec, on_event: EventCallback,
            cancel: threading.Event | None = None) -> RunResult: ...

    def sweep_orphans(self) -> int:
        """Stop sandboxes a crashed process left behind; returns how many."""
        ...

    def end_sandbox(self, sandbox_id: str) -> bool:
        """End one sandbox by the id its run reported (status event "sandbox_id");
        True if it was still there. For cancel, shutdown and recovery when its
        starter is gone; never raises for a sandbox that has already ended."""
        ...


class UnknownBackend(ValueError):
    pass


def get_backend(name: str, **config: Any) -> Backend:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UnknownBackend(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**config)
