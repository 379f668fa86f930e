"""Safe YAML reading that remembers where every value came from.

Specs come from other people's repositories, so this reader is deliberately small:
a safe composer only (no object construction), no anchors or aliases (they buy
nothing here and enable "billion laughs" documents), bounded size and depth, and a
line number for every mapping key and sequence item so that validation errors can
point at the file and line.

Plain scalars that YAML 1.1 reads in ways nobody means — `017` as octal 15, `1:00`
as 60, `on`/`yes`/`no`/`off` as booleans — are refused with what to write instead,
in files and in `--set` values alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError, shorten
from ..files import FileId, read_input

# Canonical specs are ~2 kB; 64 KiB leaves room for 256 commented rows while
# keeping a chain of 16 such files well inside a second.
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_DIGITS = 100  # in an integer; Python refuses to convert past 4,300

# Only plain data: anything else (!!python/..., !!binary, !!set, custom tags) is
# rejected rather than constructed or silently reinterpreted.
_TAGS = {
    f"tag:yaml.org,2002:{name}": name
    for name in ("null", "bool", "int", "float", "str", "seq", "map")
}

# libyaml's parser (about 10x faster than PyYAML's pure-Python one) when present.
# Its composer recurses in C, so documents are checked for depth on the event
# stream, which is flat, before anything is composed.
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):
    """A safe loader that also reads YAML 1.2 exponent floats (`1e-3`, `1.0e5`),
    which YAML 1.1 leaves as strings: a spec author writing them means numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
_YAML11_BOOLEANS = {"yes", "no", "on", "off"}


def _surprise(node: yaml.ScalarNode) -> str | None:
    """Why a plain scalar means something else in YAML 1.1 than it seems to."""
    if node.style:  # quoted or a block scalar: a string, as written
        return None
    text = node.value
    kind = _TAGS.get(node.tag)
    if kind == "bool" and text.lower() in _YAML11_BOOLEANS:
        meaning = str(text.lower() in ("yes", "on")).lower()
        return f"'{text}' reads as the boolean {meaning} in YAML 1.1; write {meaning}"
    if kind == "int" and len(text) > MAX_DIGITS:
        return f"integer of {len(text):,} digits; at most {MAX_DIGITS} in a spec"
    if kind == "int" and _OCTAL.match(text):
        value = int(text.replace("_", ""), 8)
        return (
            f"'{text}' reads as the octal number {value} in YAML 1.1; write {value}, "
            "or the number without leading zeros"
        )
    if kind in ("int", "float") and ":" in text:
        return (
            f"'{shorten(text)}' reads as a base-60 number in YAML 1.1; write the "
            "number itself"
        )
    return None


def _construct(node: yaml.ScalarNode, constructor) -> Any:
    """A scalar's value, or a SpecError (without a location) saying why not."""
    problem = _surprise(node)
    if problem:
        raise SpecError(f"{problem} (or quote it for a string)")
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:
        raise SpecError(f"invalid value: {shorten(str(exc), 120)}") from None


def scalar(text: str, source: str) -> Any:
    """A single `--set` value read like a YAML scalar; anything else (a list, a
    mapping, a tag) stays a string. `source` names the override in errors."""
    try:
        if _too_deep(text) is not None:
            return text  # a deeply nested list or mapping: not a scalar anyway
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    if node is None:
        return None  # `--set key=` is YAML's empty value, null
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _TAGS:
        return text
    try:
        return _construct(node, _Loader(""))
    except SpecError as exc:
        raise SpecError(exc.message, source=source) from None


def _too_deep(text: str) -> yaml.Event | None:
    """The first collection nested deeper than MAX_DEPTH, found on the event
    stream (which the parser produces without recursion), or None."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return event
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


class Located:
    """Plain Python data from a YAML document (or a project's TOML config) plus a
    field-path -> line index."""

    def __init__(self, data: Any, lines: dict[tuple, int | None], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def line_of(self, path: tuple) -> int | None:
        """The line of `path`, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def read_text(path: Path, display: str, what: str = "a spec") -> tuple[str, FileId]:
    """A spec file's (or another YAML input's: `what` it is, for messages) text
    and identity; regular files of at most MAX_BYTES only."""
    found = read_input(path, display, MAX_BYTES, what)
    raw = found.data
    if b"\x00" in raw:
        raise SpecError(
            "binary content; expected a UTF-8 YAML text file", source=display
        )
    try:
        return raw.decode("utf-8"), found.id
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError("invalid UTF-8", source=display, line=line) from None


def parse(text: str, source: str, keys: str = "spec keys") -> Located:
    """Parse one YAML document into plain data (dict/list/scalars) with line numbers.
    Its top level must be a mapping (of `keys`, for messages)."""
    try:
        deep = _too_deep(text)
        if deep is not None:
            raise SpecError(
                f"document is nested deeper than {MAX_DEPTH} levels",
                source=source,
                line=deep.start_mark.line + 1,
            )
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        if "maximum nesting depth" in (exc.problem or ""):
            # The libyaml in PyYAML 6.0.4's wheels has a limit of its own, which its
            # scanner can reach before _too_deep sees an event; one message for both.
            raise SpecError(
                f"document is nested deeper than {MAX_DEPTH} levels",
                source=source,
                line=line,
            ) from None
        # e.g. "expected a single document in the stream, but found another document"
        problem = ", ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(
            f"invalid YAML: {problem or 'syntax error'}", source=source, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", source=source) from None
    if node is None:
        raise SpecError(f"empty document; expected a mapping of {keys}", source=source)
    lines: dict[tuple, int] = {(): node.start_mark.line + 1}
    constructor = _Loader("")
    data = _convert(node, (), lines, constructor, source, set())
    if not isinstance(data, dict):
        raise SpecError(
            f"top level is a {type(data).__name__}; expected a mapping of {keys}",
            source=source,
            line=node.start_mark.line + 1,
        )
    return Located(data, lines, source)


def _tag_problem(node) -> str:
    if node.tag == "tag:yaml.org,2002:merge":
        return "YAML merge keys are not supported; use 'extends' instead"
    if node.tag == "tag:yaml.org,2002:timestamp" and not node.style:
        return f"'{shorten(node.value)}' reads as a date; quote it if it is a string"
    tag = shorten(node.tag.replace("tag:yaml.org,2002:", "!!"))
    return (
        f"unsupported YAML tag '{tag}'; specs hold only strings, numbers, booleans, "
        "null, lists and mappings"
    )


def _convert(node, path, lines, constructor, source, seen) -> Any:
    line = node.start_mark.line + 1
    if id(node) in seen:
        # The composer shares nodes between an anchor and its aliases.
        raise SpecError(
            "YAML anchors and aliases are not supported; use 'extends' instead",
            source=source,
            line=line,
        )
    seen.add(id(node))
    if node.tag not in _TAGS:
        raise SpecError(_tag_problem(node), source=source, line=line)
    if isinstance(node, yaml.ScalarNode):
        try:
            return _construct(node, constructor)
        except SpecError as exc:
            raise SpecError(exc.message, source=source, line=line) from None
    if isinstance(node, yaml.SequenceNode):
        out = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            out.append(_convert(item, (*path, i), lines, constructor, source, seen))
        return out
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path, lines, constructor, source, seen)
            key_line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise SpecError(
                    f"key {shorten(repr(key))} is not a string",
                    source=source,
                    line=key_line,
                )
            if key == "<<":
                raise SpecError(
                    "YAML merge keys are not supported; use 'extends' instead",
                    source=source,
                    line=key_line,
                )
            if key in out:
                raise SpecError(
                    f"duplicate key '{shorten(key)}'", source=source, line=key_line
                )
            lines[(*path, key)] = key_line
            out[key] = _convert(
                value_node, (*path, key), lines, constructor, source, seen
            )
        return out
    raise SpecError(
        "unsupported YAML node", source=source, line=line
    )  # pragma: no cover
