"""One way to read settings: each one declared once, as a dataclass field.

    @dataclass
    class DockerConfig:
        image: str = setting("AGENT_SANDBOX_DOCKER_IMAGE", "agent-sandbox:latest", "image to run")

    config = load(DockerConfig, image="mine:1")   # environment, then explicit overrides

A field's metadata holds its variable, its one-line doc and how its default
reads in the README; its type says how the variable's text is parsed. From the
same declarations come the README's settings tables (`python -m
agent_sandbox.settings --write README.md`; a test checks they match).

- A bad value is one line naming the variable (`SettingError`).
- An unknown override is an error (`UnknownSetting`), never silently dropped.
- `restore` loads a stored copy (a queued job's limits, as JSON) even after
  a field was added (it takes the current default), removed (dropped) or
  renamed (the class's `RENAMED` maps old names to new).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)
T = TypeVar("T", bound="DataclassInstance")   # settings are dataclasses
MB = 1024 * 1024
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingError(ValueError):
    """A setting's value cannot be used; the message names the variable."""


class UnknownSetting(SettingError, TypeError):
    """An override names no setting (a TypeError, as for any unknown keyword)."""


def setting(env: str | None, default: Any = dataclasses.MISSING, doc: str = "", *,
            factory: Callable[[], Any] | None = None, parse: Callable[[str], Any] | None = None,
            shown: str | None = None, also: tuple[str, ...] = (), old: tuple[str, ...] = (),
            blank: Any = dataclasses.MISSING, above: float | None = None) -> Any:
    """A dataclass field read from the variable `env` (None: not from the environment).

    `factory` computes the default at load time (shown: how the README says it);
    `parse` turns the variable's text into the value when the type alone does
    not say how (e.g. megabytes to bytes). When `env` is unset, the variables
    in `also` are read instead, then the deprecated ones in `old` (with a warning).
    A variable set but empty keeps the default, unless `blank` says what it means.
    `above`: the value must be greater (a timeout of 0 or -5 is an error, not "no limit").
    """
    metadata = {"env": env, "doc": doc, "parse": parse, "shown": shown, "also": also, "old": old,
                "blank": blank, "above": above}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def megabytes(raw: str) -> int:
    """a number of megabytes"""  # (the error message says "expected <this docstring>")
    return int(float(raw) * MB)


def executable(raw: str) -> str:
    """the path of an executable file"""
    path = os.path.expanduser(raw.strip())
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ValueError(raw)
    return path


def split_list(raw: str) -> list[str]:
    return [item for item in re.split(r"[,\s]+", raw) if item]


def load(cls: type[T], environ: Mapping[str, str] | None = None, /, **overrides: Any) -> T:
    """An instance of `cls`: each field from its variable when set, else its default;
    `overrides` (keyword arguments) win over both."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in overrides:
        if name not in fields:
            raise UnknownSetting(f"unknown {cls.__name__} setting {name!r}; "
                                 f"known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if not f.init:
            continue
        if name in overrides:
            value = overrides[name]
            if isinstance(value, str) and hints[name] is not str:
                value = parse_value(value, hints[name], f, f"{cls.__name__}.{name}")
            values[name] = value
            _check_above(f, value, f"{cls.__name__}.{name}")
            continue
        variable, raw = _read(f, environ)
        if raw:
            values[name] = parse_value(raw, hints[name], f, variable)
            _check_above(f, values[name], f"{variable}={raw!r}")
        elif raw == "" and f.metadata.get("blank", dataclasses.MISSING) is not dataclasses.MISSING:
            values[name] = f.metadata["blank"]
    return cls(**values)


def _check_above(f: dataclasses.Field, value: Any, what: str) -> None:
    above = f.metadata.get("above")
    if above is not None and isinstance(value, (int, float)) and not value > above:
        raise SettingError(f"{what} is not valid: expected a number above {above:g}")


def restore(cls: type[T], stored: Mapping[str, Any], defaults: T) -> T:
    """`stored` (a saved `asdict` of an older `cls`) on top of `defaults`."""
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kept = {}
    for name, value in stored.items():
        name = renamed.get(name, name)
        if name in names:
            kept[name] = value
        else:
            log.info("dropping stored %s setting %r: no such setting any more", cls.__name__, name)
    return dataclasses.replace(defaults, **kept)


def _read(f: dataclasses.Field, environ: Mapping[str, str]) -> tuple[str, str | None]:
    variable = f.metadata.get("env")
    if not variable:
        return "", None
    for name in (variable, *f.metadata.get("also", ())):
        if environ.get(name):
            return name, environ[name]
    for old in f.metadata.get("old", ()):
        if environ.get(old):
            log.warning("%s is deprecated; set %s instead", old, variable)
            return old, environ[old]
    return variable, environ.get(variable)  # None (unset) or "" (set but empty)


def parse_value(raw: str, kind: Any, f: dataclasses.Field, variable: str) -> Any:
    """`raw` as the field's type; a SettingError naming `variable` if it is not one."""
    parse = f.metadata.get("parse")
    try:
        if parse is not None:
            return parse(raw)
        return _as(kind, raw.strip())
    except (ValueError, TypeError):
        expected = _describe(kind) if parse is None else (parse.__doc__ or parse.__name__).strip()
        raise SettingError(f"{variable}={raw!r} is not valid: expected {expected}") from None


def _as(kind: Any, raw: str) -> Any:
    optional = _optional_of(kind)
    if optional is not None:
        kind = optional
    if kind is bool:
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise ValueError(raw)
    if kind is int:
        number = float(raw)
        if not number.is_integer():
            raise ValueError(raw)
        return int(number)
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(raw)
    if typing.get_origin(kind) is list:
        return split_list(raw)
    return raw


def _optional_of(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _describe(kind: Any) -> str:
    kind = _optional_of(kind) or kind
    return {bool: "1/0, true/false, yes/no or on/off", int: "a whole number", float: "a number",
            Path: "a path"}.get(kind, "a comma-separated list" if typing.get_origin(kind) is list else "text")


# -- the README's tables ------------------------------------------------------

def shown_default(f: dataclasses.Field) -> str:
    if f.metadata.get("shown") is not None:
        return f.metadata["shown"]
    value = f.default
    if value is dataclasses.MISSING:
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
    if value in (None, "", []):
        return "(empty)"
    if isinstance(value, list):
        value = ",".join(map(str, value))
    if isinstance(value, bool):
        value = "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def table(cls: type) -> str:
    """The markdown table of `cls`'s settings: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.metadata.get("env") and f.metadata.get("doc"):  # no doc: another class documents it
            rows.append(f"| `{f.metadata['env']}` | {shown_default(f)} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


BLOCK = re.compile(r"(<!-- settings: (?P<target>[\w.]+:\w+) -->\n)(?P<table>.*?)(<!-- /settings -->)", re.S)


def render_readme(text: str) -> str:
    """`text` with every `<!-- settings: module:Class -->` block regenerated."""
    def fill(match: re.Match) -> str:
        module, _, name = match["target"].partition(":")
        cls = getattr(importlib.import_module(module), name)
        return match.group(1) + table(cls) + match.group(4)
    return BLOCK.sub(fill, text)


def main(argv: list[str]) -> int:
    """`--write FILE` regenerates FILE's settings tables; `--check FILE` says if they are stale."""
    if len(argv) != 2 or argv[0] not in ("--write", "--check"):
        print("usage: python -m agent_sandbox.settings --write|--check README.md", file=sys.stderr)
        return 2
    path = Path(argv[1])
    text = path.read_text(encoding="utf-8")
    fresh = render_readme(text)
    if argv[0] == "--write":
        path.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != text:
        print(f"{path}: settings tables are stale; run python -m agent_sandbox.settings --write {path}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
