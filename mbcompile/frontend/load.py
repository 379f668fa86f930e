"""Load a spec: read the YAML (with `extends`), apply `--set` overrides and
`all_rows`, validate, and locate every problem.

Every error names file, line and field path, e.g.
`specs/v2.yaml:14: stages[2].s: stride must be 1 or 2`; a value changed by `--set`
is blamed on that `--set`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import MAX_LINES, SpecError, SpecErrors, shorten, shorten_path
from ..files import Inputs
from ..ir.blocks import BLOCK_TYPES, ROW_MODELS, ROW_TYPES
from ..ir.norms import NORM_MODELS, NORM_TYPES
from . import bundled, compose
from .model import STAGE_ITEM_TAGS, Spec
from .yamlsource import MAX_DEPTH, MAX_DIGITS, scalar

MAX_BLOCKS = 8192  # stage-table blocks in all (sum of n); MobileNets have 13-17


class Locator:
    """Turns a field path into a located SpecError: the file and line the value
    came from, or the `--set` that changed it."""

    def __init__(self, located: compose.Composed, origins: dict[tuple, str]) -> None:
        self.located = located
        self.origins = origins

    def error(self, loc: tuple, message: str) -> SpecError:
        field = field_path(loc) or None
        for origin_path, origin in self.origins.items():
            # The value a --set changed, or (say, a row) something containing it.
            inside = loc[: len(origin_path)] == origin_path
            if inside or (loc and origin_path[: len(loc)] == loc):
                return SpecError(message, source=origin, field=field)
        source, line = self.located.where(loc)  # merged specs: the value's own file
        return SpecError(message, source=source, line=line, field=field)


class LoadedSpec(BaseModel):
    """A validated spec plus where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: Spec
    source: str  # as the user named it
    content_hash: str  # sha256 of the normalised, validated content
    # The files read (the spec, then what it extends), which no output may replace.
    inputs: Inputs = Field(default_factory=dict, exclude=True, repr=False)
    # Locates problems found after validation (e.g. in the expanded network).
    locator: Locator | None = Field(default=None, exclude=True, repr=False)

    def error(self, loc: tuple, message: str) -> SpecError:
        if self.locator is None:
            return SpecError(message, source=self.source, field=field_path(loc))
        return self.locator.error(loc, message)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Override:
    """A value set on top of the spec, by field path: what `--set KEY=VALUE` gives,
    or a typed value from a project config or the Python API. `origin` is where it
    was set, for messages (`--set stages.3.c=48`, `pyproject.toml:14`)."""

    path: tuple
    value: Any
    origin: str


def override(key: str, value: Any, origin: str) -> Override:
    """A typed override of the field at dotted path `key` (`stages.3.c`,
    `stages[3].c`). Values are single YAML-like scalars, as with `--set`."""
    path = _override_path(key, origin)
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise SpecError(
            f"'{shorten(key)}': a {type(value).__name__} is not a single value; "
            "set each field by its own path",
            source=origin,
        )
    _check_size(value, origin, path)
    return Override(path, value, origin)


def _check_size(value: Any, source: str, path: tuple) -> None:
    """Integers as long as YAML allows them in a file (MAX_DIGITS)."""
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 10 // 3:
        raise SpecError(
            f"integer of more than {MAX_DIGITS} digits",
            source=source,
            field=field_path(path) or None,
        )


def fold_bn(origin: str) -> Override:
    """`--fold-bn`, a project's `fold_bn` or the API's: the spec's fold_batch_norm."""
    return Override(("fold_batch_norm",), True, origin)


Overrides = Sequence["str | Override"]


def load(
    path: str | Path, overrides: Overrides = (), display: str | None = None
) -> LoadedSpec:
    """Read, override and validate a spec file (named `display` in messages and
    generated headers; by default as given), or a bundled spec by name when no
    file has that path. Raises SpecError on bad input."""
    if display is None:  # a bundled spec's name, or a path as given
        path, display = bundled.resolve(path)
        display = str(path) if display is None else display
    if not Path(display).name.isprintable():
        # The file name is quoted in generated headers and in messages.
        raise SpecError(
            "file name contains control or invisible characters", source=display
        )
    located = compose.load(Path(path), display)  # `extends:` merged, with origins
    return _override_and_validate(located, overrides, display)


def load_text(
    text: str, overrides: Overrides = (), display: str = "<spec>", folder: Path = Path()
) -> LoadedSpec:
    """A spec given as YAML text; `extends` is relative to `folder`."""
    return _override_and_validate(
        compose.from_text(text, display, folder), overrides, display
    )


def load_data(
    data: Mapping,
    overrides: Overrides = (),
    display: str = "<dict>",
    folder: Path = Path(),
) -> LoadedSpec:
    """A spec given as a mapping of plain values (str, int, float, bool, None,
    lists, mappings), as YAML would load it; `extends` is relative to `folder`."""
    plain = _plain(data, (), display)
    if not isinstance(plain, dict):
        raise SpecError(
            f"a spec is a mapping of spec keys, not a {type(data).__name__}",
            source=display,
        )
    return _override_and_validate(
        compose.from_data(plain, display, folder), overrides, display
    )


def _override_and_validate(
    located: compose.Composed, overrides: Overrides, display: str
) -> LoadedSpec:
    data = copy.deepcopy(located.data)
    origins: dict[tuple, str] = {}
    for item in overrides:
        if isinstance(item, str):
            item = _parse_override(item)
        _apply_override(data, item.path, item.value, item.origin)
        origins[item.path] = item.origin
    compose.apply_all_rows(data, located, origins)
    spec = validate(data, located, origins)
    spec_file, *bases = located.files
    inputs = {spec_file: "the spec this command reads"}
    for base in bases:
        inputs[base] = (
            f"{shorten_path(located.files[base], 60)}, which the spec extends"
        )
    return LoadedSpec(
        spec=spec,
        source=display,
        content_hash=content_hash(spec),
        locator=Locator(located, origins),
        inputs=inputs,
    )


def _plain(value: Any, path: tuple, source: str, depth: int = 0) -> Any:
    """A copy of `value` as plain YAML data, or a SpecError naming the field that
    holds something else (an object, a set, bytes)."""
    if depth > MAX_DEPTH:
        raise SpecError(
            f"nested deeper than {MAX_DEPTH} levels",
            source=source,
            field=field_path(path) or None,
        )
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(
                    f"key {shorten(repr(key))} is not a string",
                    source=source,
                    field=field_path(path) or None,
                )
            out[key] = _plain(item, (*path, key), source, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, (*path, i), source, depth + 1) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        _check_size(value, source, path)
        return value
    raise SpecError(
        f"a {shorten(type(value).__name__)} is not spec data (str, int, float, bool, "
        "None, lists and mappings are)",
        source=source,
        field=field_path(path) or None,
    )


def validate(
    data: dict, located: compose.Composed, origins: dict[tuple, str] | None = None
) -> Spec:
    locator = Locator(located, origins or {})
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errors = [err for err in exc.errors() if not _inherits_bad_block(err, data)]
        located = [(_located_error(e, data, locator, suggest=False), e) for e in errors]
        # In file order (pydantic reports in field order); --set problems last.
        located.sort(
            key=lambda p: (p[0].line is None, p[0].source or "", p[0].line or 0)
        )
        # "Did you mean" only for the problems listed: a file of 4,500 unknown keys
        # took 2.7 s to report, 1.1 s of it suggestions for lines never shown.
        found = [
            _located_error(err, data, locator) if i < MAX_LINES else error
            for i, (error, err) in enumerate(located)
        ]
        raise SpecErrors(found) from None
    problems = [locator.error(loc, message) for loc, message in _network_limits(spec)]
    if problems:
        raise SpecErrors(problems)
    return spec


def _inherits_bad_block(err: dict, data: dict) -> bool:
    """A row's bad block type that it only inherits from a bad top-level `block:`
    (reported once, there)."""
    loc = tuple(p for p in err["loc"] if p not in STAGE_ITEM_TAGS)
    if err["type"] != "union_tag_invalid" or loc[:1] != ("stages",):
        return False
    row = data
    for part in loc:
        row = _safe_get(row, part)
    return isinstance(row, dict) and "block" not in row


def total_stride(spec: Spec) -> int:
    """How much the feature map shrinks from input to the last block."""
    stride = spec.stem.s
    for _, row in spec.rows():
        stride *= row.s
    if spec.output_stride is not None:  # later strides become dilations
        stride = min(stride, spec.output_stride)
    return stride


def _network_limits(spec: Spec) -> list[tuple[tuple, str]]:
    """Limits that involve several fields, as (field path, message)."""
    problems = []
    stride = total_stride(spec)
    if spec.resolution < stride:
        problems.append(
            (
                ("resolution",),
                f"{spec.resolution} is too small for this network (total stride "
                f"{stride}; needs at least {stride})",
            )
        )
    blocks = sum(n for _, _, n in spec.repeats())
    if blocks > MAX_BLOCKS:
        problems.append(
            (
                ("stages",),
                f"{blocks} blocks in all (sum of n"
                f"{' times depth_coefficient' if spec.depth_coefficient != 1 else ''}"
                f"); at most {MAX_BLOCKS}",
            )
        )
    return problems + _norm_limits(spec)


def _norm_limits(spec: Spec) -> list[tuple[tuple, str]]:
    """What the network's norm cannot do: be built under conventions whose
    reference library lacks it, fold into convolutions, or serve a block type
    built with other norms only."""
    norm = NORM_TYPES[spec.norm.type]
    problems = []
    profile = spec.conventions.profile
    if profile not in norm.profiles:
        others = [n.name for n in NORM_TYPES.values() if profile in n.profiles]
        problems.append(
            (
                ("norm",),
                f"{norm.name} is built as {' and '.join(norm.profiles)} builds it; "
                f"the {profile} conventions have {', '.join(others)} only",
            )
        )
    if spec.fold_batch_norm and not norm.folds:
        problems.append(
            (
                ("fold_batch_norm",),
                f"only batch norm folds into convolutions; this network's norm is "
                f"{norm.name}, computed from each input, which no weight can hold",
            )
        )
    for path, row in spec.rows():
        allowed = BLOCK_TYPES[row.block].norms
        if allowed is not None and norm.name not in allowed:
            problems.append(
                (
                    ("stages", *path),
                    f"{row.block} rows are built with {' or '.join(allowed)} only; "
                    f"this network's norm is {norm.name}",
                )
            )
    return problems


def content_hash(spec: Spec) -> str:
    """Hash of the validated content: formatting, comments, key order, shorthands and
    values spelled out at their default don't count (so neither do fields that later
    versions add with a default)."""
    # Top-level `block:` only fills in rows, which carry it after validation.
    content = spec.model_dump(mode="json", exclude_defaults=True, exclude={"block"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# One step of a --set path: `name`, `3`, or `name[3]` (indices in brackets, as
# errors print them: `stages[3].c` and `stages.3.c` are the same field).
_STEP = re.compile(r"([^.\[\]]+)((?:\[[0-9]+\])*)")
_MAX_INDEX_DIGITS = 9  # longer indices name no row (and no int conversion limit)


def _parse_override(text: str) -> Override:
    where = f"--set {text}"
    try:
        text.encode("utf-8")
    except UnicodeError:  # argv bytes that are not UTF-8 arrive as lone surrogates
        raise SpecError("not UTF-8 text", source=where) from None
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("expected KEY=VALUE", source=where)
    path = _override_path(key.strip(), where)
    value = scalar(raw, where)  # a YAML scalar; lists, mappings and tags stay strings
    return Override(path, value, where)


def _override_path(key: str, where: str) -> tuple:
    path = _field_steps(key, where)
    if path[0] == "extends":
        raise SpecError(
            "'extends' names the base spec in the file itself; an override changes "
            "values after it is merged",
            source=where,
        )
    return path


def _field_steps(key: str, where: str) -> tuple:
    parts: list[Any] = []
    for step in key.split("."):
        match = _STEP.fullmatch(step) if step.isprintable() else None
        if match is None:
            raise SpecError(
                f"'{shorten(key)}' is not a field path (e.g. stages.3.c or "
                "stages[3].c)",
                source=where,
            )
        name, brackets = match.groups()
        # ASCII digits only: "²".isdigit() is true but int("²") fails.
        is_index = name.isascii() and name.isdigit()
        parts.append(int(name) if is_index and len(name) <= _MAX_INDEX_DIGITS else name)
        for index in re.findall(r"\[([0-9]+)\]", brackets):
            parts.append(int(index) if len(index) <= _MAX_INDEX_DIGITS else index)
    return tuple(parts)


def _apply_override(data: Any, path: tuple, value: Any, where: str) -> None:
    if path[0] == "all_rows" and len(path) > 1 and "all_rows" not in data:
        data["all_rows"] = {}  # --set all_rows.k=5 works without all_rows: in the file
    node = data
    for i, part in enumerate(path[:-1]):
        child = _child(node, part)
        if child is _MISSING:
            shown = _dotted(path[: i + 1])
            raise SpecError(f"no such field '{shorten(shown)}' to set", source=where)
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not 0 <= last < len(node):
            raise SpecError(
                f"no row {shorten(str(last))} in '{shorten(_dotted(path[:-1]))}'",
                source=where,
            )
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value  # unknown keys are reported by validation
    else:
        raise SpecError(
            f"'{shorten(_dotted(path[:-1]))}' is not a mapping", source=where
        )


_MISSING = object()


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict) and isinstance(part, str):
        if part == "conventions" and isinstance(node.get(part), str):
            # `conventions: torchvision`, then --set conventions.bn_epsilon=...
            node[part] = {"profile": node[part]}
        child = node.get(part)
        return _MISSING if child is None else child
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


# --------------------------------------------------------------------------- errors


def field_path(loc: tuple) -> str:
    """A field's path as messages print it: `stages[3].c`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds the discriminator value (the block type) and validator names.
    return tuple(
        p
        for p in loc
        if p not in ROW_TYPES
        and p not in NORM_TYPES
        and p not in STAGE_ITEM_TAGS
        and not str(p).startswith("function-")
    )


def problem_text(err: dict, loc: tuple, known: Iterable[str]) -> str:
    """The message of one pydantic error in a validated file: an unknown key with
    the closest of the `known` keys, a missing key, or the validator's message."""
    kind, message = err["type"], err["msg"]
    if kind == "extra_forbidden":
        message = f"unknown key '{shorten(str(loc[-1]))}'"
        match = difflib.get_close_matches(str(loc[-1]), list(known), n=1, cutoff=0.6)
        if match:
            message += f" — did you mean '{match[0]}'?"
    elif kind == "missing":
        message = f"missing required key '{shorten(str(loc[-1]))}'"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    return message


def _located_error(
    err: dict, data: dict, locator: Locator, suggest: bool = True
) -> SpecError:
    loc = _clean_loc(tuple(err["loc"]))
    kind = err["type"]
    message = err["msg"]
    if kind == "extra_forbidden":
        key = loc[-1]
        message = f"unknown key '{shorten(str(key))}'"
        suggestion = suggest and _suggest(key, loc[:-1], data)
        if suggestion:
            message += f" — did you mean '{suggestion}'?"
    elif kind == "missing":
        message = f"missing required key '{shorten(str(loc[-1]))}'"
    elif kind == "union_tag_invalid" and loc[:1] == ("norm",):
        message = f"unknown norm; expected one of {', '.join(NORM_TYPES)}"
        loc = (*loc, "type")
    elif kind == "union_tag_invalid":
        message = f"unknown block type; expected one of {', '.join(ROW_TYPES)}"
        loc = (*loc, "block")
    elif kind == "union_tag_not_found" and loc[:1] == ("norm",):
        message = f"norm does not name its type; add 'type:' ({', '.join(NORM_TYPES)})"
    elif kind == "union_tag_not_found":
        message = (
            "row does not name its block type; add 'block:' to the row or the spec"
        )
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    return locator.error(loc, message)


def _suggest(key: Any, parent: tuple, data: dict) -> str | None:
    model = _model_at(parent, data)
    if model is None or not isinstance(key, str):
        return None
    names = list(model.model_fields) + (list(compose.KEYS) if model is Spec else [])
    names = [name for name in names if name != key]  # never "did you mean" itself
    matches = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _model_at(path: tuple, data: Any) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `path` of `data`."""
    model: type[BaseModel] | None = Spec
    node = data
    i = 0
    while i < len(path):
        part = path[i]
        if model is Spec and part == "stages":
            if i + 1 >= len(path):
                return None
            row = _safe_get(_safe_get(node, "stages"), path[i + 1])
            i += 2
            if isinstance(row, list) and i < len(path):  # a row of a group
                row, i = _safe_get(row, path[i]), i + 1
            block = (
                row.get("block", data.get("block")) if isinstance(row, dict) else None
            )
            model, node = ROW_MODELS.get(block), row
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        node = _safe_get(node, part)
        model = _nested_model(field.annotation, node)
        i += 1
    return model


def _safe_get(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return None


def _nested_model(annotation: Any, node: Any = None) -> type[BaseModel] | None:
    """The model of a field's value `node`; of a union told apart by `type:` (the
    spec's `norm`), the member that `node` names."""
    if isinstance(node, dict) and isinstance(node.get("type"), str):
        named = NORM_MODELS.get(node["type"])
        if named is not None and named in _members(annotation):
            return named
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _members(annotation: Any) -> tuple:
    """The types an annotation admits, through Optional, unions and Annotated."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return (annotation,)
    return tuple(member for arg in args for member in _members(arg))
