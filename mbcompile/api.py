"""The Python API: a spec to source text, to a live model, or to its costs, without
writing any file.

    import mbcompile

    model = mbcompile.build_model("specs/v2.yaml", "torch")          # nn.Module
    model = mbcompile.build_model("mobilenetv4_conv_small", "keras")  # keras.Model
    source = mbcompile.generate_source("specs/v2.yaml", "torch")      # str
    costs = mbcompile.cost_report("v3_small", overrides={"width_multiplier": 0.75})
    latency = mbcompile.estimate_latency("v2", device="desktop_avx2")  # .total_ms

A spec is
- a path (`str` or `os.PathLike`) to a YAML file;
- the name of a spec that ships with mbcompile (`"v2"`, `"mobilenetv4_conv_small"`:
  `bundled_specs()` lists them) when no file has that path;
- YAML text: a `str` holding a line break;
- a mapping of plain values, as YAML would load the file.
`extends` in text or a mapping is relative to the working folder. `overrides` are
`--set`'s: a mapping of dotted field paths to values (`{"stages.3.c": 48}`) or
`"KEY=VALUE"` strings.

A live model runs the very source `mbcompile` writes for the spec (executed in a
fresh module, registered so that TorchScript, pickling and tracebacks can read
it), so it is the committed file's model. Bad input raises `SpecError`, whose text
is the CLI's message lines (`specs/v2.yaml:24: stages[2].s: stride must be 1 or
2`); its `source`, `line`, `field` and `message` hold the parts.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from . import compiler
from .analysis.cost import Report
from .analysis.latency import Latency, estimate
from .backends.live import run_source
from .errors import SpecError, shorten
from .frontend.bundled import bundled_specs
from .frontend.device import DeviceProfile, load_device
from .frontend.load import (
    Override,
    load,
    load_data,
    load_text,
    override,
)
from .frontend.load import fold_bn as fold_bn_override
from .ir.graph import Graph

if TYPE_CHECKING:
    import keras
    import torch

__all__ = [
    "Backend",
    "SpecLike",
    "build_model",
    "bundled_specs",
    "cost_report",
    "estimate_latency",
    "generate_source",
    "load_module",
]

Backend = Literal["keras", "torch"]
SpecLike = str | os.PathLike[str] | Mapping[str, Any]
OverridesLike = Mapping[str, Any] | Sequence[str] | None


def generate_source(
    spec: SpecLike,
    backend: Backend,
    *,
    overrides: OverridesLike = None,
    fold_bn: bool = False,
) -> str:
    """The source text `mbcompile SPEC --backend BACKEND` writes."""
    if backend not in compiler.BACKENDS:
        expected = " or ".join(repr(b) for b in compiler.BACKENDS)
        raise SpecError(
            f"unknown backend {shorten(repr(backend))}; expected {expected}"
        )
    return compiler.generate(_graph(spec, overrides, fold_bn), backend)


def cost_report(
    spec: SpecLike, *, overrides: OverridesLike = None, fold_bn: bool = False
) -> Report:
    """The costs `mbcompile costs SPEC` prints: `trainable_params`,
    `non_trainable_params`, `macs`, `peak_activation_elements`, `blocks`,
    `stages()`, `layers`; `to_json()` is `--format json`'s content."""
    return compiler.cost_report(_graph(spec, overrides, fold_bn))


def estimate_latency(
    spec: SpecLike,
    *,
    device: str | os.PathLike[str] | DeviceProfile | None = None,
    overrides: OverridesLike = None,
    fold_bn: bool = False,
    batch: int = 1,
) -> Latency:
    """The roofline latency estimate `mbcompile costs SPEC --device DEVICE` prints:
    `total_ms`, `blocks` and `ops` (time, bound), `to_json()`. `device` is a
    profile file, a shipped profile's name (default phone_cpu) or a profile."""
    if not isinstance(device, DeviceProfile):
        device = load_device(device)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SpecError(f"batch must be a positive integer, not {shorten(repr(batch))}")
    return estimate(_graph(spec, overrides, fold_bn), device, batch)


def load_module(
    spec: SpecLike,
    backend: Backend,
    *,
    overrides: OverridesLike = None,
    fold_bn: bool = False,
) -> types.ModuleType:
    """The generated module, executed in a fresh module object (imports keras or
    torch): what `import generated.<backend>.<spec>` gives for the committed file."""
    source = generate_source(spec, backend, overrides=overrides, fold_bn=fold_bn)
    return run_source(source, backend)


@overload
def build_model(
    spec: SpecLike,
    backend: Literal["torch"],
    *,
    overrides: OverridesLike = ...,
    fold_bn: bool = ...,
    **kwargs: Any,
) -> torch.nn.Module: ...
@overload
def build_model(
    spec: SpecLike,
    backend: Literal["keras"],
    *,
    overrides: OverridesLike = ...,
    fold_bn: bool = ...,
    **kwargs: Any,
) -> keras.Model: ...
def build_model(
    spec: SpecLike,
    backend: Backend,
    *,
    overrides: OverridesLike = None,
    fold_bn: bool = False,
    **kwargs: Any,
) -> Any:
    """A live `torch.nn.Module` or `keras.Model` for the spec: the generated
    module's `build_model(**kwargs)` (`num_classes=`, `dropout=`, ...)."""
    module = load_module(spec, backend, overrides=overrides, fold_bn=fold_bn)
    return module.build_model(**kwargs)


# ------------------------------------------------------------------- spec sources


def _graph(spec: SpecLike, overrides: OverridesLike, fold_bn: bool) -> Graph:
    items = _overrides(overrides)
    if fold_bn:
        items.append(fold_bn_override("fold_bn=True"))
    if isinstance(spec, Mapping):
        loaded = load_data(spec, items)
    elif isinstance(spec, str) and "\n" in spec:
        loaded = load_text(spec, items)
    elif isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not isinstance(path, str):
            raise SpecError("a spec path must be text, not bytes")
        loaded = load(path, items)  # a file, or a bundled spec by name
    else:
        raise SpecError(
            f"a spec is a path, YAML text or a mapping, not a {type(spec).__name__}"
        )
    return compiler.expand(loaded)[1]


def _overrides(overrides: OverridesLike) -> list[Override | str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        items: list[Override | str] = []
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise SpecError(f"override key {shorten(repr(key))} is not a string")
            items.append(override(key, value, f"overrides[{key!r}]"))
        return items
    if isinstance(overrides, str):
        raise SpecError(
            "overrides is a mapping or a list of 'KEY=VALUE' strings, not one string"
        )
    return [str(item) for item in overrides]
