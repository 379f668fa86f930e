"""Load and validate a spec: YAML -> `Spec` (pydantic).

Validation is strict (unknown keys and wrong types are errors, no string-to-number
coercion) and every error names file, line and field path, e.g.
`specs/v2.yaml:14: stages[2].s: stride must be 1 or 2`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import compose
from . import conventions as conv
from .errors import SpecError, SpecErrors, shorten
from .yamlsource import scalar

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ACTIVATIONS = (
    "relu",
    "relu6",
    "hardswish",
    "hardsigmoid",
    "swish",
    "sigmoid",
    "identity",
)
ACTIVATION_ALIASES = {"silu": "swish", "hswish": "hardswish", "linear": "identity"}
MAX_CHANNELS = 16_384
MAX_REPEATS = 64
MAX_BLOCKS = 8192  # stage-table blocks in all (sum of n); MobileNets have 13-17


def _check(condition: bool, message: str):
    if not condition:
        raise ValueError(message)


def _stride(v: int) -> int:
    _check(v in (1, 2), "stride must be 1 or 2")
    return v


def _kernel(v: int) -> int:
    _check(v % 2 == 1 and 1 <= v <= 11, "kernel must be an odd size from 1 to 11")
    return v


def _channels(v: int) -> int:
    _check(1 <= v <= MAX_CHANNELS, f"channels must be between 1 and {MAX_CHANNELS}")
    return v


def _repeats(v: int) -> int:
    _check(1 <= v <= MAX_REPEATS, f"repeats must be between 1 and {MAX_REPEATS}")
    return v


def _activation(v: str) -> str:
    v = ACTIVATION_ALIASES.get(v, v)
    _check(
        v in ACTIVATIONS,
        f"unknown activation '{v}'; expected one of {', '.join(ACTIVATIONS)}",
    )
    return v


def _identifier(v: str) -> str:
    _check(
        # fullmatch, not match: `$` also matches before a final newline
        bool(IDENTIFIER.fullmatch(v)),
        "must be a Python identifier: letters, digits and '_', not starting with a digit, "
        "at most 64 characters",
    )
    return v


def _positive(v: float) -> float:
    _check(v > 0, "must be greater than 0")
    return v


def _ratio(v: float) -> float:
    _check(0 <= v < 1, "must be at least 0 and less than 1")
    return v


Stride = Annotated[int, AfterValidator(_stride)]
Kernel = Annotated[int, AfterValidator(_kernel)]
Channels = Annotated[int, AfterValidator(_channels)]
Repeats = Annotated[int, AfterValidator(_repeats)]
Activation = Annotated[str, AfterValidator(_activation)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Positive = Annotated[float, AfterValidator(_positive)]
Ratio = Annotated[float, AfterValidator(_ratio)]
Dilation = Annotated[int, Field(ge=1, le=16)]
SeRatio = Annotated[float, Field(gt=0, le=1)]


class Strict(BaseModel):
    # No inf/nan: they pass range checks like `> 0` and then break the arithmetic
    # or the generated code.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False
    )


class ConventionsSpec(Strict):
    """A named profile plus optional per-field overrides (see conventions.py)."""

    profile: Literal["torchvision", "keras_applications"]
    stride2_padding: Literal["symmetric", "same", "end"] | None = None
    stem_padding: Literal["symmetric", "same", "end"] | None = None
    bn_epsilon: Positive | None = None
    bn_momentum: Ratio | None = None
    width_rounding: Literal["round", "truncate", "truncate_stages"] | None = None
    expansion_rounding: Literal["round", "floor"] | None = None
    expanded_size: Literal["scale", "ratio"] | None = None
    expand_conv: Literal["when_needed", "except_first"] | None = None
    stem_width: Literal["scaled", "fixed"] | None = None
    head_width: Literal["scaled", "scaled_above_one"] | None = None
    se_rounding: Literal["floor", "exact"] | None = None
    classifier: Literal["linear", "conv1x1"] | None = None
    input_rescaling: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _profile_name(cls, data: Any) -> Any:
        # `conventions: keras_applications` is shorthand for {profile: keras_applications}
        return {"profile": data} if isinstance(data, str) else data


class StemSpec(Strict):
    """The first conv-bn-act."""

    c: Channels
    k: Kernel = 3
    s: Stride = 2
    act: Activation = "relu6"


class Row(Strict):
    """What every stage-table row shares: a dilated convolution does not stride."""

    @model_validator(mode="after")
    def _dilation_without_stride(self) -> Row:
        dilation, stride = getattr(self, "dilation", 1), getattr(self, "s", 1)
        _check(dilation == 1 or stride == 1, "a row with dilation > 1 needs s: 1")
        return self


def _one_expansion(row: Any) -> None:
    _check(
        (row.t is None) != (row.exp is None),
        "give exactly one of 't' (ratio) or 'exp' (expanded channels)",
    )


class DepthwiseSeparableRow(Row):
    """MobileNet V1 row: depthwise k x k (+BN+act), then pointwise 1x1 to c (+BN+act)."""

    block: Literal["depthwise_separable"]
    c: Channels
    n: Repeats = 1
    s: Stride = 1
    k: Kernel = 3
    act: Activation = "relu6"
    dilation: Dilation = 1


class InvertedResidualRow(Row):
    """MobileNet V2 row (t, c, n, s): expansion ratio, out channels, repeats, stride.

    Options: `exp` (absolute expanded channels instead of `t`), squeeze-excite
    (`se`, `se_ratio`), `dilation`, and `residual: false` to drop the shortcut.
    """

    block: Literal["inverted_residual"]
    t: Positive | None = None
    exp: Channels | None = None
    c: Channels
    n: Repeats = 1
    s: Stride = 1
    k: Kernel = 3
    act: Activation = "relu6"
    se: bool = False
    se_ratio: SeRatio = 0.25
    dilation: Dilation = 1
    residual: bool = True

    @model_validator(mode="after")
    def _expansion(self) -> InvertedResidualRow:
        _one_expansion(self)
        return self


class FusedInvertedResidualRow(Row):
    """Fused inverted residual (EdgeTPU, EfficientNetV2): a k x k full conv expands
    (instead of 1x1 + depthwise), then a 1x1 linear projection; one k x k conv when
    the expansion keeps the width (t = 1)."""

    block: Literal["fused_inverted_residual"]
    t: Positive | None = None
    exp: Channels | None = None
    c: Channels
    n: Repeats = 1
    s: Stride = 1
    k: Kernel = 3
    act: Activation = "relu6"
    dilation: Dilation = 1
    residual: bool = True

    @model_validator(mode="after")
    def _expansion(self) -> FusedInvertedResidualRow:
        _one_expansion(self)
        return self


class ConvBnActRow(Row):
    """A plain stage: k x k conv (no bias), batch norm, activation; n times."""

    block: Literal["conv_bn_act"]
    c: Channels
    n: Repeats = 1
    s: Stride = 1
    k: Kernel = 3
    act: Activation = "relu6"
    dilation: Dilation = 1


class BneckRow(Row):
    """MobileNet V3 row: kernel, expanded size, out channels, SE, activation, stride."""

    block: Literal["bneck"]
    k: Kernel
    exp: Channels
    c: Channels
    se: bool
    act: Activation
    s: Stride
    n: Repeats = 1
    se_ratio: SeRatio = 0.25
    dilation: Dilation = 1
    residual: bool = True


StageRow = Annotated[
    DepthwiseSeparableRow
    | InvertedResidualRow
    | BneckRow
    | FusedInvertedResidualRow
    | ConvBnActRow,
    Field(discriminator="block"),
]
# Block type -> the model of its rows: the one list of stage-table block types.
_ROW_MODELS = {
    "depthwise_separable": DepthwiseSeparableRow,
    "inverted_residual": InvertedResidualRow,
    "bneck": BneckRow,
    "fused_inverted_residual": FusedInvertedResidualRow,
    "conv_bn_act": ConvBnActRow,
}
BLOCK_TYPES = tuple(_ROW_MODELS)


class HeadConvSpec(Strict):
    """The last 1x1 conv-bn-act: absolute channels `c`, or `t` times its input."""

    c: Channels | None = None
    t: Positive | None = None
    act: Activation = "relu6"

    @model_validator(mode="after")
    def _one_size(self) -> HeadConvSpec:
        _check((self.c is None) != (self.t is None), "give exactly one of 'c' or 't'")
        return self


class HiddenSpec(Strict):
    """A hidden fully connected layer before the logits (MobileNet V3)."""

    c: Channels
    act: Activation = "hardswish"


class HeadSpec(Strict):
    conv: HeadConvSpec | None = None
    pool: Literal["avg", "max", "none"] = "avg"  # "none": only with include_top: false
    hidden: HiddenSpec | None = None
    dropout: Ratio = 0.0


def _tap(v: int | str) -> int | str:
    if isinstance(v, str):
        _check(
            v in STRIDE_TAPS,
            f"unknown feature tap '{v}'; expected a block index or one of "
            f"{', '.join(STRIDE_TAPS)}",
        )
    else:
        _check(0 <= v < 1024, "block index must be between 0 and 1023")
    return v


def _taps(v: list | str) -> list | str:
    if isinstance(v, str):
        _check(v == "each_stride", "expected a list of taps or 'each_stride'")
    else:
        _check(len(set(v)) == len(v), "feature taps must not repeat")
    return v


# A tap is a block index in `features` (0 = stem) or the last block at a total stride;
# `each_stride` taps the last block of every resolution.
STRIDE_TAPS = ("stride2", "stride4", "stride8", "stride16", "stride32")
FeatureTap = Annotated[int | str, AfterValidator(_tap)]
FeatureTaps = Annotated[
    list[FeatureTap] | str, Field(min_length=1), AfterValidator(_taps)
]


class Spec(Strict):
    name: Identifier
    family: Literal["v1", "v2", "v3"]
    resolution: Annotated[int, Field(ge=1, le=4096)]
    in_channels: Annotated[int, Field(ge=1, le=64)] = 3
    num_classes: Annotated[int, Field(ge=1, le=100_000)]
    width_multiplier: Annotated[float, Field(gt=0, le=8)] = 1.0
    depth_multiplier: Annotated[int, Field(ge=1, le=8)] = 1
    channel_divisor: Annotated[int, Field(ge=1, le=256)] = 8
    conventions: ConventionsSpec
    # Backbone use: no classifier, dilation instead of stride, named feature outputs.
    include_top: bool = True
    # Inference form: batch norm folded into the preceding convolution's bias
    # (`mbcompile weights --fold-bn` converts trained weights to it).
    fold_batch_norm: bool = False
    output_stride: Literal[8, 16, 32] | None = None
    features: FeatureTaps | None = None
    block: Literal[BLOCK_TYPES] | None = None  # type: ignore[valid-type]
    stem: StemSpec
    stages: Annotated[list[StageRow], Field(min_length=1, max_length=256)]
    head: HeadSpec

    @field_validator("features")
    @classmethod
    def _features_need_headless(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and info.data.get("include_top", True):
            raise ValueError("feature outputs need include_top: false")
        return v

    @field_validator("head")
    @classmethod
    def _top_needs_pooling(cls, v: HeadSpec, info: ValidationInfo) -> HeadSpec:
        if v.pool == "none" and info.data.get("include_top", True):
            raise ValueError(
                "pool: none needs include_top: false (logits need pooling)"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_block(cls, data: Any) -> Any:
        # `block:` at the top names the block type of every row that does not say.
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            default = data.get("block")
            data = dict(data)
            data["stages"] = [
                {"block": default, **row}
                if isinstance(row, dict) and "block" not in row and default is not None
                else row
                for row in data["stages"]
            ]
        return data

    def resolved_conventions(self) -> conv.Conventions:
        given = self.conventions.model_dump(exclude={"profile"})
        return conv.resolve(self.conventions.profile, self.family, given)


class Locator:
    """Turns a field path into a located SpecError: the file and line the value
    came from, or the `--set` that changed it."""

    def __init__(self, located: compose.Composed, origins: dict[tuple, str]) -> None:
        self.located = located
        self.origins = origins

    def error(self, loc: tuple, message: str) -> SpecError:
        field = _field_path(loc) or None
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
    # Locates problems found after validation (e.g. in the expanded network).
    locator: Locator | None = Field(default=None, exclude=True, repr=False)

    def error(self, loc: tuple, message: str) -> SpecError:
        if self.locator is None:
            return SpecError(message, source=self.source, field=_field_path(loc))
        return self.locator.error(loc, message)


# --------------------------------------------------------------------------- loading


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Read, override and validate a spec file. Raises SpecError on bad input."""
    display = str(path)
    if not Path(display).name.isprintable():
        # The file name is quoted in generated headers and in messages.
        raise SpecError(
            "file name contains control or invisible characters", source=display
        )
    located = compose.load(Path(path), display)  # `extends:` merged, with origins
    data = copy.deepcopy(located.data)
    origins: dict[tuple, str] = {}
    for text in overrides:
        field_path, value = _parse_override(text)
        _apply_override(data, field_path, value, text)
        origins[field_path] = f"--set {text}"
    compose.apply_all_rows(data, located, origins)
    spec = validate(data, located, origins)
    return LoadedSpec(
        spec=spec,
        source=display,
        content_hash=content_hash(spec),
        locator=Locator(located, origins),
    )


def validate(
    data: dict, located: compose.Composed, origins: dict[tuple, str] | None = None
) -> Spec:
    locator = Locator(located, origins or {})
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        found = [
            _located_error(err, data, locator)
            for err in exc.errors()
            if not _inherits_bad_block(err, data)
        ]
        # In file order (pydantic reports in field order); --set problems last.
        found.sort(key=lambda e: (e.line is None, e.source or "", e.line or 0))
        raise SpecErrors(found) from None
    problems = [locator.error(loc, message) for loc, message in _network_limits(spec)]
    if problems:
        raise SpecErrors(problems)
    return spec


def _inherits_bad_block(err: dict, data: dict) -> bool:
    """A row's bad block type that it only inherits from a bad top-level `block:`
    (reported once, there)."""
    loc = err["loc"]
    if err["type"] != "union_tag_invalid" or loc[:1] != ("stages",) or len(loc) != 2:
        return False
    row = _safe_get(data.get("stages"), loc[1])
    return isinstance(row, dict) and "block" not in row


def total_stride(spec: Spec) -> int:
    """How much the feature map shrinks from input to the last block."""
    stride = spec.stem.s
    for row in spec.stages:
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
    blocks = sum(row.n for row in spec.stages)
    if blocks > MAX_BLOCKS:
        problems.append(
            (("stages",), f"{blocks} blocks in all (sum of n); at most {MAX_BLOCKS}")
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


def _parse_override(text: str) -> tuple[tuple, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("expected KEY=VALUE", source=f"--set {text}")
    value = scalar(raw)  # a YAML scalar; lists, mappings and tags stay strings
    parts: list[Any] = []
    for part in key.strip().split("."):
        # ASCII digits only: "²".isdigit() is true but int("²") fails.
        parts.append(int(part) if part.isascii() and part.isdigit() else part)
    return tuple(parts), value


def _apply_override(data: Any, path: tuple, value: Any, text: str) -> None:
    where = f"--set {text}"
    node = data
    for i, part in enumerate(path[:-1]):
        child = _child(node, part)
        if child is _MISSING:
            shown = _dotted(path[: i + 1])
            raise SpecError(f"no such field '{shown}' to set", source=where)
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not 0 <= last < len(node):
            raise SpecError(f"no row {last} in '{_dotted(path[:-1])}'", source=where)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value  # unknown keys are reported by validation
    else:
        raise SpecError(f"'{_dotted(path[:-1])}' is not a mapping", source=where)


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


def _field_path(loc: tuple) -> str:
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
        p for p in loc if p not in BLOCK_TYPES and not str(p).startswith("function-")
    )


def _located_error(err: dict, data: dict, locator: Locator) -> SpecError:
    loc = _clean_loc(tuple(err["loc"]))
    kind = err["type"]
    message = err["msg"]
    if kind == "extra_forbidden":
        key = loc[-1]
        message = f"unknown key '{shorten(str(key))}'"
        suggestion = _suggest(key, loc[:-1], data)
        if suggestion:
            message += f" — did you mean '{suggestion}'?"
    elif kind == "missing":
        message = f"missing required key '{loc[-1]}'"
    elif kind == "union_tag_invalid":
        message = f"unknown block type; expected one of {', '.join(BLOCK_TYPES)}"
        loc = (*loc, "block")
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
            block = (
                row.get("block", data.get("block")) if isinstance(row, dict) else None
            )
            model, node, i = _ROW_MODELS.get(block), row, i + 2
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _nested_model(field.annotation)
        node = _safe_get(node, part)
        i += 1
    return model


def _safe_get(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return None


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
