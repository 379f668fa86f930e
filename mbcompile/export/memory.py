"""The memory an export needs, weighed before the model is built: an export that
cannot fit ends in one line (exit 2) instead of in the kernel's OOM killer, and a
TFLite export that would not fit by its fast route takes TensorFlow's leaner one.

An export's peak resident memory (imports, the model, the export, its validation)
grows with the parameter count, the weights being copied over and over on the way:
need = base + per_parameter x parameters, per format and route, the line through
two exports measured at 224x224 (mobilenetv4_conv_small, 3.8M parameters, and
efficientnet_b7, 66.7M; `python benchmarks/export_memory.py` prints both figures
and the line), plus HEADROOM. What the machine has is the kernel's MemAvailable,
within the cgroup's limit when there is one, or what `--memory` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError

GIB = 1 << 30
HEADROOM = 1.1  # for what a line through two models does not see in a third


@dataclass(frozen=True)
class Route:
    """One way to export a format, whose whole export peaks at base +
    per_parameter x parameters bytes; `note` says how it differs (progress)."""

    base: float
    per_parameter: float
    note: str = ""

    def need(self, parameters: int) -> float:
        return HEADROOM * (self.base + self.per_parameter * parameters)


# Each format's routes, fastest first: an export takes the first that fits.
# TFLite converts the model's traced inference call by default ("traced": the
# weights are folded into a graph that each of TensorFlow's stages copies) or, when
# that would not fit, through a SavedModel ("savedmodel": the converter reads the
# variables itself). efficientnet_b7 at 224x224: 7.9 GiB in 47 s against 5.2 GiB
# in 72 s.
ROUTES: dict[str, dict[str, Route]] = {
    "onnx": {"": Route(0.45 * GIB, 21.7)},
    "tflite": {
        "traced": Route(0.96 * GIB, 112.1),
        "savedmodel": Route(
            0.99 * GIB, 67.8, "through a SavedModel (slower, less memory)"
        ),
    },
    "keras": {"": Route(0.82 * GIB, 46.9)},
    "savedmodel": {"": Route(0.91 * GIB, 52.6)},
    "pt2": {"": Route(0.40 * GIB, 10.6)},
    "executorch": {"": Route(0.44 * GIB, 20.6)},
}


def route(fmt: str, parameters: int, memory: float | None, *, said: bool) -> str:
    """The route `fmt` exports a network of `parameters` by within `memory` bytes
    (None: not known, the fastest; `said`: given by --memory); a SpecError naming
    both figures when none fits."""
    routes = ROUTES[fmt]
    if memory is None:
        return next(iter(routes))
    for name, option in routes.items():
        if option.need(parameters) <= memory:
            return name
    least = min(r.need(parameters) for r in routes.values())
    fitting = [
        other
        for other, others in ROUTES.items()
        if min(r.need(parameters) for r in others.values()) <= memory
    ]
    has = (
        f"--memory allows {memory / GIB:.1f} GiB"
        if said
        else f"this machine has {memory / GIB:.1f} GiB available"
    )
    raise SpecError(
        f"exporting {parameters / 1e6:.3g}M parameters to {fmt} takes about "
        f"{least / GIB:.1f} GiB of memory and {has}"
        + (f"; {', '.join(fitting)} would fit" if fitting else "")
        + ("" if said else " (--memory GIB to say otherwise)")
    )


def available() -> float | None:
    """Bytes the machine can still give this process: MemAvailable, capped by the
    cgroup's memory.max less its use but for file pages, which the kernel reclaims
    (containers); None off Linux."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            for line in (cgroup / "memory.stat").read_text().splitlines():
                if line.startswith("file "):
                    used -= int(line.split()[1])
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return float(min(found)) if found else None
