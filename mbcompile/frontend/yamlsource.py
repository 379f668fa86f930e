"""Safe YAML reading that remembers where every value came from.

Specs come from other people's repositories, so this reader is deliberately small:
PyYAML's safe composer only (no object construction), no anchors or aliases (they
buy nothing here and enable "billion laughs" documents), bounded size and depth, and
a line number for every mapping key and sequence item so that validation errors can
point at the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError, shorten

# Canonical specs are ~2 kB; 64 KiB leaves room for 256 commented rows while keeping
# PyYAML's pure-Python composer (~10 µs a byte at worst) well inside a second.
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32

# Only plain data: anything else (!!python/..., !!binary, !!set, custom tags) is
# rejected rather than constructed or silently reinterpreted.
_TAGS = {
    f"tag:yaml.org,2002:{name}": name
    for name in ("null", "bool", "int", "float", "str", "seq", "map")
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 exponent floats (`1e-3`, `1.0e5`), which
    YAML 1.1 leaves as strings: a spec author writing them means numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def scalar(text: str) -> Any:
    """A single `--set` value read like a YAML scalar; anything else stays a string."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except (yaml.YAMLError, RecursionError):
        return text
    if node is None:
        return None  # `--set key=` is YAML's empty value, null
    if not isinstance(node, yaml.ScalarNode) or node.tag not in _TAGS:
        return text
    return _Loader("").construct_object(node, deep=True)


class Located:
    """Plain Python data from a YAML document plus a field-path -> line index."""

    def __init__(self, data: Any, lines: dict[tuple, int], source: str) -> None:
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


def read_text(path: Path, display: str) -> str:
    if path.is_dir():
        raise SpecError("is a directory, expected a YAML file", source=display)
    try:
        # Read at most one byte past the limit: /dev/zero, pipes and files growing
        # while we read are bounded too (their size on disk says nothing).
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("file not found", source=display) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError(f"cannot read file ({reason})", source=display) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(
            f"file is larger than {MAX_BYTES:,} bytes, the limit for a spec",
            source=display,
        )
    if b"\x00" in raw:
        raise SpecError(
            "binary content; expected a UTF-8 YAML text file", source=display
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError("invalid UTF-8", source=display, line=line) from None


def parse(text: str, source: str) -> Located:
    """Parse one YAML document into plain data (dict/list/scalars) with line numbers."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        # e.g. "expected a single document in the stream, but found another document"
        problem = ", ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(
            f"invalid YAML: {problem or 'syntax error'}", source=source, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise SpecError("document is nested too deeply", source=source) from None
    if node is None:
        raise SpecError(
            "empty document; expected a mapping of spec keys", source=source
        )
    lines: dict[tuple, int] = {(): node.start_mark.line + 1}
    constructor = _Loader("")
    data = _convert(node, (), 0, lines, constructor, source, set())
    if not isinstance(data, dict):
        raise SpecError(
            f"top level is a {type(data).__name__}; expected a mapping of spec keys",
            source=source,
            line=node.start_mark.line + 1,
        )
    return Located(data, lines, source)


def _tag_problem(node) -> str:
    if node.tag == "tag:yaml.org,2002:merge":
        return "YAML merge keys are not supported; use 'extends' instead"
    if node.tag == "tag:yaml.org,2002:timestamp" and node.style is None:
        return f"'{shorten(node.value)}' reads as a date; quote it if it is a string"
    tag = shorten(node.tag.replace("tag:yaml.org,2002:", "!!"))
    return (
        f"unsupported YAML tag '{tag}'; specs hold only strings, numbers, booleans, "
        "null, lists and mappings"
    )


def _convert(node, path, depth, lines, constructor, source, seen) -> Any:
    line = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise SpecError(
            f"document is nested deeper than {MAX_DEPTH} levels",
            source=source,
            line=line,
        )
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
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise SpecError(f"invalid value: {exc}", source=source, line=line) from None
    if isinstance(node, yaml.SequenceNode):
        out = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            out.append(
                _convert(item, (*path, i), depth + 1, lines, constructor, source, seen)
            )
        return out
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path, depth + 1, lines, constructor, source, seen)
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
                value_node, (*path, key), depth + 1, lines, constructor, source, seen
            )
        return out
    raise SpecError(
        "unsupported YAML node", source=source, line=line
    )  # pragma: no cover
