"""Safe YAML reading that remembers where every value came from.

Specs come from other people's repositories, so this reader is deliberately small:
PyYAML's safe composer only (no object construction), no anchors or aliases (they
buy nothing here and enable "billion laughs" documents), bounded size and depth, and
a line number for every mapping key and sequence item so that validation errors can
point at the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError

MAX_BYTES = 1_000_000
MAX_DEPTH = 32


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
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SpecError("file not found", source=display) from None
    except OSError as exc:
        raise SpecError(f"cannot read file ({exc.strerror})", source=display) from None
    if path.is_dir():
        raise SpecError("is a directory, expected a YAML file", source=display)
    if size > MAX_BYTES:
        raise SpecError(
            f"file is {size:,} bytes; specs are limited to {MAX_BYTES:,} bytes",
            source=display,
        )
    raw = path.read_bytes()
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
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise SpecError("document is nested too deeply", source=source) from None
    if node is None:
        raise SpecError(
            "empty document; expected a mapping of spec keys", source=source
        )
    lines: dict[tuple, int] = {(): node.start_mark.line + 1}
    constructor = yaml.SafeLoader("")
    data = _convert(node, (), 0, lines, constructor, source, set())
    if not isinstance(data, dict):
        raise SpecError(
            f"top level is a {type(data).__name__}; expected a mapping of spec keys",
            source=source,
            line=node.start_mark.line + 1,
        )
    return Located(data, lines, source)


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
                    f"key {key!r} is not a string", source=source, line=key_line
                )
            if key == "<<":
                raise SpecError(
                    "YAML merge keys are not supported; use 'extends' instead",
                    source=source,
                    line=key_line,
                )
            if key in out:
                raise SpecError(f"duplicate key '{key}'", source=source, line=key_line)
            lines[(*path, key)] = key_line
            out[key] = _convert(
                value_node, (*path, key), depth + 1, lines, constructor, source, seen
            )
        return out
    raise SpecError(
        "unsupported YAML node", source=source, line=line
    )  # pragma: no cover
