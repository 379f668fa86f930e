"""Device profiles: what the latency estimate (`analysis/latency.py`) knows about a
machine, as a small YAML file validated like a spec.

    name: desktop_avx2
    description: a desktop x86 CPU with AVX2 and FMA, 2 threads, TFLite/XNNPACK
    sources: ["where each figure comes from", ...]
    threads: 2
    dtype: float32              # storage of weights and activations
    peak_gmacs: 96              # multiply-accumulates per second, all threads, in G
    bandwidth_gbs: 25           # main-memory bandwidth, GB/s
    cache: {bytes: 8388608, bandwidth_gbs: 100}   # optional: a working set that fits
    overhead_us: 4              # fixed cost of each op that runs
    fuses: {batch_norm: true, activations: [relu, relu6, identity], padding: true}
    ops:                        # per op class; absent classes: efficiency 1
      depthwise: {efficiency: 0.2, overhead_us: 6}
      pointwise: {efficiency: 0.6, tap_ns: 0.1}   # tap_ns: convolutions only

Unknown keys and bad values are errors naming the file, line and field (exit code
2), as for specs. `--device NAME` finds a shipped profile (`devices/NAME.yaml`) when
no file has that path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator

from ..errors import SpecError, SpecErrors, shorten
from .fields import ACTIVATIONS, Identifier, Positive, Strict, check
from .load import field_path, problem_text
from .yamlsource import Located, parse, read_text

# The op classes a profile can tune, as `analysis/latency.py` sorts ops into them.
# Convolutions: `pointwise` (1x1), `conv` (k x k, grouped too), `depthwise`; `dense`;
# `attention` (its two matrix products and softmax); elementwise and data movement;
# and each activation function that does not fuse into the op before it. A k x k
# convolution can be tuned by its kernel size as well (`depthwise_7x7`, `conv_3x3`):
# a profile that names the size is used for it, the general class otherwise.
# Convolutions (not depthwise ones) also pay `tap_ns` per output element and
# kernel tap (see OpClass).
OP_CLASSES = (
    "conv",
    "pointwise",
    "depthwise",
    "dense",
    "attention",
    "batch_norm",
    "add",
    "mul",
    "scale",
    "rescale",
    "pool",
    "avgpool",
    "upsample",
    "pad",
    *ACTIVATIONS,
)
DTYPES = ("float32", "float16", "int8")


SIZED = re.compile(r"(conv|depthwise)_(\d{1,2})x\2")  # depthwise_7x7


def _op_class(name: str) -> str:
    sized = SIZED.fullmatch(name)
    if sized:
        kernel = int(sized.group(2))
        check(kernel % 2 == 1 and 1 <= kernel <= 11, "kernel must be odd, 1 to 11")
        return name
    check(
        name in OP_CLASSES,
        f"unknown op class '{shorten(name)}'; expected one of {', '.join(OP_CLASSES)}"
        ", or conv or depthwise with a kernel size (depthwise_7x7)",
    )
    return name


def _activations(names: list[str]) -> list[str]:
    for name in names:
        check(
            name in ACTIVATIONS,
            f"unknown activation '{shorten(name)}'; expected one of "
            f"{', '.join(ACTIVATIONS)}",
        )
    return names


Efficiency = Annotated[float, Field(gt=0, le=1)]
Microseconds = Annotated[float, Field(ge=0, le=1e6)]
Nanoseconds = Annotated[float, Field(ge=0, le=1e6)]

# The classes `tap_ns` applies to: convolutions that reduce over input channels at
# each kernel tap (a depthwise convolution's tap is one MAC, its efficiency says it).
TAPPED = re.compile(r"pointwise|conv(_\d{1,2}x\d{1,2})?")


class OpClass(Strict):
    """How one class of ops fares against the roofline: the fraction of peak
    compute it reaches, its fixed cost per op (default: the profile's), and for
    convolutions a fixed cost per output element and kernel tap, in ns: the
    start of each tap's reduction over the input channels, which a stem with 3
    input channels pays every 3 MACs and a 1x1 convolution with 256 every 256."""

    efficiency: Efficiency = 1.0
    overhead_us: Microseconds | None = None
    tap_ns: Nanoseconds = 0.0


class Cache(Strict):
    """A faster memory level: an op whose bytes (inputs, output, weights) fit in
    `bytes` moves them at `bandwidth_gbs` instead of main memory's."""

    bytes: Annotated[int, Field(ge=1, le=2**40)]
    bandwidth_gbs: Positive


class Fuses(Strict):
    """What the runtime folds into the op before it, so it costs nothing itself."""

    batch_norm: bool = True  # into the convolution it follows (where foldable)
    activations: Annotated[list[str], AfterValidator(_activations)] = Field(
        default_factory=lambda: ["relu", "relu6", "identity"]
    )
    padding: bool = True  # explicit zero padding into the convolution after it


class DeviceProfile(Strict):
    name: Identifier
    description: str = ""
    sources: list[str] = Field(min_length=1)
    threads: Annotated[int, Field(ge=1, le=1024)] = 1
    dtype: Literal["float32", "float16", "int8"] = "float32"
    peak_gmacs: Positive
    bandwidth_gbs: Positive
    cache: Cache | None = None
    overhead_us: Microseconds = 0.0
    fuses: Fuses = Field(default_factory=Fuses)
    ops: dict[Annotated[str, AfterValidator(_op_class)], OpClass] = Field(
        default_factory=dict
    )

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        check(all(s.strip() for s in value), "a source must not be empty")
        return value

    @field_validator("ops")
    @classmethod
    def _taps(cls, value: dict[str, OpClass]) -> dict[str, OpClass]:
        for name, settings in value.items():
            check(
                not settings.tap_ns or TAPPED.fullmatch(name) is not None,
                f"tap_ns of '{name}': only convolutions (pointwise, conv, conv_3x3, "
                "...) have taps",
            )
        return value

    def op(self, op_class: str) -> OpClass:
        """The settings of an op class (efficiency 1 and the profile's overhead
        when the profile does not name it)."""
        return self.ops.get(op_class) or _DEFAULT_OP

    def overhead_s(self, op_class: str) -> float:
        own = self.op(op_class).overhead_us
        return (self.overhead_us if own is None else own) * 1e-6

    def tap_s(self, op_class: str) -> float:
        """Seconds per output element and kernel tap of a convolution."""
        return self.op(op_class).tap_ns * 1e-9

    @property
    def ridge_point(self) -> float:
        """MACs per byte at which an op turns from memory- to compute-bound (the
        MobileNetV4 paper's RP)."""
        return self.peak_gmacs / self.bandwidth_gbs

    @property
    def digest(self) -> str:
        content = json.dumps(self.data(), sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()

    def data(self, **options) -> dict:
        """The profile as plain data, without tap costs of 0 (the default)."""
        data = self.model_dump(mode="json", **options)
        for settings in data["ops"].values():
            if not settings.get("tap_ns", 1):
                del settings["tap_ns"]
        return data


_DEFAULT_OP = OpClass()


# ------------------------------------------------------------------------ loading


def bundled_devices() -> dict[str, Path]:
    """The profiles that ship with mbcompile, by name."""
    found: dict[str, Path] = {}
    for folder in _device_folders():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def _device_folders() -> list[Path]:
    """Profiles ship inside the wheel; in a checkout they sit at the repo root."""
    here = Path(__file__).resolve().parent.parent
    return [p for p in (here / "devices", here.parent / "devices") if p.is_dir()]


DEFAULT_DEVICE = "phone_cpu"


def load_device(name_or_path: str | os.PathLike[str] | None = None) -> DeviceProfile:
    """A device profile from a YAML file, or a shipped one by name (default
    DEFAULT_DEVICE). Bad input raises a located SpecError."""
    text = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_DEVICE
    path, display = Path(text), text
    if not _exists(path):
        bundled = bundled_devices()
        if text in bundled:
            path, display = bundled[text], f"devices/{text}.yaml"
        elif "/" not in text and os.sep not in text and not text.endswith(".yaml"):
            raise SpecError(
                f"no device profile file '{shorten(text)}', and no shipped profile of "
                f"that name (shipped: {', '.join(bundled) or 'none'})"
            )
    source, _ = read_text(path, display, "a device profile")
    return parse_device(source, display)


def parse_device(text: str, display: str = "<device>") -> DeviceProfile:
    """A device profile from YAML text (`display` names it in messages)."""
    located = parse(text, display, "device profile keys")
    try:
        return DeviceProfile.model_validate(located.data)
    except ValidationError as exc:
        errors = [_located(err, located) for err in exc.errors()]
        errors.sort(key=lambda e: e.line or 0)
        raise SpecErrors(errors) from None


def dump_device(device: DeviceProfile) -> str:
    """A profile as the YAML file `load_device` reads back (deterministic)."""
    import yaml

    data = device.data(exclude_none=True)
    if device.cache is None:
        data.pop("cache", None)
    header = (
        "# A device profile for mbcompile's latency estimate (--device FILE).\n"
        "# Efficiencies are fractions of peak_gmacs; overheads in microseconds.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=88, allow_unicode=True)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL byte, a name too long: reading says so
        return False


def _located(err: dict, located: Located) -> SpecError:
    # pydantic adds validator names to the location of a dict key's error.
    loc = tuple(p for p in err["loc"] if p != "[key]")
    return SpecError(
        problem_text(err, loc, _keys_at(loc[:-1])),
        source=located.source,
        line=located.line_of(loc),
        field=field_path(loc) or None,
    )


def _keys_at(loc: tuple) -> list[str]:
    """The keys the model at `loc` accepts (for "did you mean")."""
    models = {
        (): DeviceProfile,
        ("cache",): Cache,
        ("fuses",): Fuses,
    }
    model = models.get(tuple(loc))
    if model is None and len(loc) == 2 and loc[0] == "ops":
        model = OpClass
    return list(model.model_fields) if model else []
