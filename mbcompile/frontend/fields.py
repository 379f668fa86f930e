"""Validated field types of spec models: the base model, value checks, and the
vocabularies (activations) that every stage-table row and the spec itself share.

Block modules build their row models from these, so a kernel, a stride or an
activation is checked the same way in every row type.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ACTIVATIONS = (
    "relu",
    "relu6",
    "hardswish",
    "hardsigmoid",
    "swish",
    "gelu",  # exact (erf): torch's nn.GELU() and Keras' "gelu", timm's default
    "gelu_tanh",  # the tanh approximation: nn.GELU(approximate="tanh") (MobileNetV5)
    "sigmoid",
    "identity",
)
ACTIVATION_ALIASES = {"silu": "swish", "hswish": "hardswish", "linear": "identity"}
MAX_CHANNELS = 16_384
MAX_REPEATS = 64


def check(condition: bool, message: str) -> None:
    """Raise the ValueError pydantic turns into a located validation error."""
    if not condition:
        raise ValueError(message)


def _stride(v: int) -> int:
    check(v in (1, 2), "stride must be 1 or 2")
    return v


def _kernel(v: int) -> int:
    check(v % 2 == 1 and 1 <= v <= 11, "kernel must be an odd size from 1 to 11")
    return v


def _kernels(v: int | list[int]) -> int | list[int]:
    if isinstance(v, int):
        return _kernel(v)
    check(
        2 <= len(v) <= 8,
        "a mixed conv takes 2 to 8 kernels, one per channel group (one kernel is "
        "a plain number)",
    )
    for k in v:
        _kernel(k)
    return v


def _channels(v: int) -> int:
    check(1 <= v <= MAX_CHANNELS, f"channels must be between 1 and {MAX_CHANNELS}")
    return v


def _repeats(v: int) -> int:
    check(1 <= v <= MAX_REPEATS, f"repeats must be between 1 and {MAX_REPEATS}")
    return v


def _activation(v: str) -> str:
    v = ACTIVATION_ALIASES.get(v, v)
    check(
        v in ACTIVATIONS,
        f"unknown activation '{v}'; expected one of {', '.join(ACTIVATIONS)}",
    )
    return v


def _se_activation(v: str) -> str:
    v = ACTIVATION_ALIASES.get(v, v)
    check(
        v in (*ACTIVATIONS, BLOCK_ACTIVATION),
        f"unknown activation '{v}'; expected one of {', '.join(ACTIVATIONS)}, or "
        f"{BLOCK_ACTIVATION} (the activation of the block it sits in)",
    )
    return v


def _identifier(v: str) -> str:
    check(
        # fullmatch, not match: `$` also matches before a final newline
        bool(IDENTIFIER.fullmatch(v)),
        "must be a Python identifier: letters, digits and '_', not starting with a digit, "
        "at most 64 characters",
    )
    return v


def _positive(v: float) -> float:
    check(v > 0, "must be greater than 0")
    return v


def _ratio(v: float) -> float:
    check(0 <= v < 1, "must be at least 0 and less than 1")
    return v


Stride = Annotated[int, AfterValidator(_stride)]
Kernel = Annotated[int, AfterValidator(_kernel)]
# A kernel, or a list of them: a mixed conv (MixConv), its channels split into as
# many groups, each convolved with its own kernel (see ir/layers/mixed_conv.py).
Kernels = Annotated[int | list[int], AfterValidator(_kernels)]
Channels = Annotated[int, AfterValidator(_channels)]
Repeats = Annotated[int, AfterValidator(_repeats)]
Activation = Annotated[str, AfterValidator(_activation)]
Identifier = Annotated[str, AfterValidator(_identifier)]
# Squeeze-excite's activation: one of ACTIVATIONS, or `block` for the activation of
# the block it sits in (the schema lists `block` after the activations).
BLOCK_ACTIVATION = "block"
SeActivation = Annotated[
    str,
    AfterValidator(_se_activation),
    Field(json_schema_extra={"enum": [BLOCK_ACTIVATION]}),
]
Positive = Annotated[float, AfterValidator(_positive)]
Ratio = Annotated[float, AfterValidator(_ratio)]
Dilation = Annotated[int, Field(ge=1, le=16)]
# Channels per group of a grouped convolution (timm's `gs`): 1 is depthwise.
GroupSize = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
SeRatio = Annotated[float, Field(gt=0, le=1)]


class Strict(BaseModel):
    # No inf/nan: they pass range checks like `> 0` and then break the arithmetic
    # or the generated code.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,  # a field's docstring is its description
    )


class RowModel(Strict):
    """What every stage-table row shares: `n` repeats, the first with stride `s`;
    a dilated convolution does not stride."""

    @model_validator(mode="after")
    def _dilation_without_stride(self) -> RowModel:
        dilation, stride = getattr(self, "dilation", 1), getattr(self, "s", 1)
        check(dilation == 1 or stride == 1, "a row with dilation > 1 needs s: 1")
        return self

    @model_validator(mode="after")
    def _one_squeeze_width(self) -> RowModel:
        if getattr(self, "se_c", None) is not None:
            check(self.se, "se_c (squeeze-excite channels) needs se: true")
            check(
                "se_ratio" not in self.model_fields_set,
                "give se_ratio or se_c (squeeze-excite channels), not both",
            )
        return self


def one_expansion(row: RowModel) -> None:
    """Rows that expand take a ratio `t` or an absolute size `exp`, not both."""
    check(
        (row.t is None) != (row.exp is None),
        "give exactly one of 't' (ratio) or 'exp' (expanded channels)",
    )
