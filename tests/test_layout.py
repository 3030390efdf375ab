"""The package's layout holds: an import walk over agent_sandbox's source.

Every import counts, wherever it is written (module level, inside a function, under
TYPE_CHECKING): a cycle that only the type checker or a late call follows is still
two modules that cannot be read, or moved, one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = "agent_sandbox"
ROOT = REPO / PACKAGE
# What only the host runs: the agent (inside the sandbox) must import none of it, even indirectly.
HOST_ONLY = ("agent_sandbox.backends", "agent_sandbox.isolation", "agent_sandbox.relay.host",
             "agent_sandbox.jobs", "agent_sandbox.workspace", "agent_sandbox.outputs",
             "agent_sandbox.followup", "agent_sandbox.manifest", "agent_sandbox.testing", "agent_sandbox.__main__")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The agent_sandbox modules `name` imports (a name imported from a package that is a
    module of its own counts as that module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports, directly or not, each with the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for nxt in sorted(graph[current]):
            if nxt not in seen:
                seen[nxt] = current
                todo.append(nxt)
    return seen


def chain(seen: dict[str, str], start: str, end: str) -> str:
    path = [end]
    while path[-1] != start:
        path.append(seen[path[-1]])
    return " -> ".join(reversed(path))


def test_the_walk_sees_the_layout(graph):
    """The walk itself works: it finds the package's modules and imports we know are there."""
    assert {"agent_sandbox.agent.loop", "agent_sandbox.backends.contract", "agent_sandbox.isolation.jail",
            "agent_sandbox.relay.host", "agent_sandbox.jobs", "agent_sandbox.manifest"} <= set(graph)
    assert "agent_sandbox.backends.monitor" in graph["agent_sandbox.backends.contract"]
    assert "agent_sandbox.backends.modal_image" in graph["agent_sandbox.backends.modal"], "from pkg import module"
    assert "agent_sandbox.relay.agent" in graph["agent_sandbox.agent.loop"], "an import inside a function"


def test_no_import_cycle_inside_the_package(graph):
    for name in sorted(graph):
        seen = reachable(graph, name)
        assert name not in seen, f"import cycle: {chain(seen, name, name)}"


def test_the_agent_imports_nothing_of_the_host(graph):
    for name in sorted(n for n in graph if n.startswith(f"{PACKAGE}.agent")):
        seen = reachable(graph, name)
        host = sorted(m for m in seen if m.startswith(HOST_ONLY))
        assert not host, f"the agent imports host-only code: {chain(seen, name, host[0])}"


def test_isolation_imports_nothing_from_the_backends(graph):
    for name in sorted(n for n in graph if n.startswith(f"{PACKAGE}.isolation")):
        seen = reachable(graph, name)
        upward = sorted(m for m in seen if m.startswith(f"{PACKAGE}.backends"))
        assert not upward, f"isolation imports a backend: {chain(seen, name, upward[0])}"


def test_a_planted_cycle_is_found(tmp_path):
    """The cycle check fails when it should: two modules importing each other, one of them
    only under TYPE_CHECKING."""
    pkg = tmp_path / "agent_sandbox"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from agent_sandbox.b import B\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent_sandbox import a\n")
    modules = {module_name(p, tmp_path): p for p in pkg.rglob("*.py")}
    graph = {n: imports_of(n, p, modules) for n, p in modules.items()}
    assert "agent_sandbox.a" in reachable(graph, "agent_sandbox.a")

