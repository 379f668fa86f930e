"""Spec composition: `extends:` with deep-merge overrides, and `all_rows:`.

`extends: base.yaml` (relative to the extending file's folder) loads the base spec,
then merges this file on top: mappings merge key by key, lists and scalars replace.
`all_rows:` is a mapping applied on top of every stage row whose block type has
those keys (e.g. `all_rows: {k: 3, se: false}` turns a V3 table minimalistic).

Merged data keeps where each value came from — a path -> (file, line) map — so an
error in a value inherited from a base file names the base file and its line.
Merging costs time linear in the size of the files: a replaced value's origins are
found by walking that value, never by scanning every origin.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import SpecError, SpecErrors, shorten_path
from ..files import FileError, FileId, MissingFile
from ..ir.blocks import ROW_MODELS
from .yamlsource import Located, parse, read_text

KEYS = ("extends", "all_rows")  # consumed here, never seen by validation
MAX_CHAIN = 16

Origin = tuple[str, int | None]  # (file as displayed, line)


class Composed(Located):
    """Merged spec data with a path -> (file, line) origin for every value, and the
    files it was read from (identity -> file as displayed), the spec's first."""

    def __init__(
        self,
        data: dict,
        origins: dict[tuple, Origin],
        source: str,
        files: dict[FileId, str],
    ) -> None:
        super().__init__(data, {p: line for p, (_, line) in origins.items()}, source)
        self.origins = origins
        self.files = files

    def where(self, path: tuple) -> Origin:
        """The file and line of `path`, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.origins:
                return self.origins[path]
            path = path[:-1]
        return self.origins.get((), (self.source, None))


def load(path: Path, display: str) -> Composed:
    """Read a spec and everything it extends, merged, with origins."""
    text, identity = read_text(Path(path), display)
    return _compose(Path(path), display, parse(text, display), ((identity, display),))


# A spec given as text or data has no file; `extends` is relative to `folder`.
_NO_FILE: FileId = (-1, -1)


def from_text(text: str, display: str, folder: Path) -> Composed:
    """A spec given as YAML text (named `display` in messages)."""
    return _compose(folder / display, display, parse(text, display), _unfiled(display))


def from_data(data: dict, display: str, folder: Path) -> Composed:
    """A spec given as plain data (a mapping as YAML would load it); messages name
    fields, without lines."""
    located = Located(data, {(): None}, display)
    return _compose(folder / display, display, located, _unfiled(display))


def _unfiled(display: str) -> tuple[tuple[FileId, str], ...]:
    return ((_NO_FILE, display),)


def _compose(
    path: Path, display: str, located: Located, chain: tuple[tuple[FileId, str], ...]
) -> Composed:
    """`located` (of `path`, the last file of `chain`) merged over what it extends."""
    data = located.data
    origins = {p: (display, line) for p, line in located.lines.items()}
    if "extends" not in data:
        return Composed(data, origins, display, dict(chain))
    base_name = data.pop("extends")
    at = {"source": display, "line": located.lines.get(("extends",))}
    if not isinstance(base_name, str) or not base_name.strip():
        raise SpecError("must be the path of a spec file", field="extends", **at)
    base_path = path.parent / base_name
    base_display = os.path.normpath(Path(display).parent / base_name)
    shown = [shorten_path(d) for d in [*dict(chain).values(), base_display]]
    names = " -> ".join(shown)
    if len(chain) >= MAX_CHAIN:
        raise SpecError(
            f"extends chain longer than {MAX_CHAIN} files: {names}",
            field="extends",
            **at,
        )
    try:
        base_text, base_id = read_text(base_path, base_display)
    except MissingFile:
        raise SpecError(
            f"base spec not found: {names}", field="extends", **at
        ) from None
    except FileError as exc:
        raise SpecError(
            f"base spec {shorten_path(base_display, 60)}: {exc.message}",
            field="extends",
            **at,
        ) from None
    if base_id in dict(chain):
        raise SpecError(f"extends cycle: {names}", field="extends", **at)
    chain = (*chain, (base_id, base_display))
    base = _compose(base_path, base_display, parse(base_text, base_display), chain)
    merged, merged_origins = base.data, dict(base.origins)
    _merge(merged, data, (), merged_origins, origins)
    merged_origins[()] = origins[()]
    return Composed(merged, merged_origins, display, base.files)


def _merge(
    base: dict, over: dict, path: tuple, origins: dict, over_origins: dict
) -> None:
    """Merge `over` into `base` in place: mappings recurse, everything else replaces."""
    for key, value in over.items():
        p = (*path, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            origins[p] = over_origins[p]
            _merge(base[key], value, p, origins, over_origins)
            continue
        if key in base:
            for q in _paths(base[key], p):
                origins.pop(q, None)
        base[key] = value
        for q in _paths(value, p):
            if q in over_origins:
                origins[q] = over_origins[q]


def _paths(value: Any, path: tuple) -> Iterator[tuple]:
    """`path` and the path of everything inside `value`."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))


def apply_all_rows(
    data: dict, located: Composed, set_origins: dict[tuple, str]
) -> None:
    """Apply (and remove) `all_rows:`, after --set overrides.

    Each key goes to the rows whose block type has that field; a key no row type has
    is an error. A row key given with --set keeps its --set value.
    """
    if "all_rows" not in data:
        return
    values = data.pop("all_rows")
    source, line = located.where(("all_rows",))
    if not isinstance(values, dict):
        raise SpecError(
            "must be a mapping of row keys, e.g. {k: 3, se: false}",
            source=source,
            line=line,
            field="all_rows",
        )
    fields = {name: set(model.model_fields) for name, model in ROW_MODELS.items()}
    known = sorted(set().union(*fields.values()))
    errors = []
    for key in values:
        if key not in known:
            message = f"unknown row key '{key}'"
            match = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            if match:
                message += f" — did you mean '{match[0]}'?"
            source, line = located.where(("all_rows", key))
            errors.append(
                SpecError(message, source=source, line=line, field=f"all_rows.{key}")
            )
    if errors:
        raise SpecErrors(errors)
    stages = data.get("stages")
    if not isinstance(stages, list):
        return  # validation reports it
    rows = []  # (path, row) for rows and for the rows of groups (stages)
    for i, item in enumerate(stages):
        if isinstance(item, list):
            rows += [(("stages", i, j), row) for j, row in enumerate(item)]
        else:
            rows.append((("stages", i), item))
    for path, row in rows:
        if not isinstance(row, dict):
            continue
        row_fields = fields.get(row.get("block", data.get("block")), set())
        for key, value in values.items():
            target = (*path, key)
            if key not in row_fields or target in set_origins:
                continue
            row[key] = copy.deepcopy(value)
            if ("all_rows", key) in set_origins:
                set_origins[target] = set_origins[("all_rows", key)]
            else:
                located.origins[target] = located.where(("all_rows", key))
