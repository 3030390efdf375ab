"""Host-side backends: each starts one sandbox per run and streams its events.

A backend is looked up by name and imported only when used, so the `modal` and
`docker` SDKs load only for their own backend. What a backend is, and how a
run goes, is the contract (contract.py):

    backend = get_backend("local")
    result = backend.run(spec, on_event, cancel=threading.Event())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_sandbox.backends.contract import Backend

# name -> "module:Class"; built-in backends use the same registry as plugins would.
BACKENDS: dict[str, str] = {
    "local": "agent_sandbox.backends.local:LocalBackend",
    "docker": "agent_sandbox.backends.docker:DockerBackend",
    "modal": "agent_sandbox.backends.modal:ModalBackend",
}


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
