"""Fitting a device profile to measured latencies (`mbcompile bench --calibrate`).

The roofline of `latency.py` is linear in its inverse throughputs once each op's
bound is known: a network's time is

    sum over compute-bound ops of class c:  work / (peak · efficiency_c) + taps · tap_c
  + sum over memory-bound ops:              bytes / bandwidth (or the cache's)
  + sum over ops that run:                  overhead (of their class)

so the fit alternates between assigning bounds with the current profile and
solving a non-negative least-squares problem in the inverse throughputs, the tap
costs and the overheads, on relative errors (a 1 ms and a 10 ms network count
alike). A small pull towards the starting profile keeps what the measurements
cannot tell apart (a class that never appears, a bandwidth no op is bound by) where
it was.

1x1 and k x k convolutions (`pointwise`, `conv` and its sized classes) are fitted
as one GEMM class by default: one MAC rate and one cost per kernel tap for all,
as runtimes that run both on the same GEMM kernels (XNNPACK's) show. Fitted apart,
`conv`'s rate rests on the few k x k convolutions of the samples (mostly stems with
3 input channels, whose slowness is their taps'), and a network of fused blocks
is overestimated by more than a quarter (benchmarks/latency_estimate.py).

Only the profile's numbers change; its structure (fusions, dtype, the cache's size,
the peak) stays, except that the peak rises if a class runs faster than it.
NumPy is imported when a fit runs (the benchmark's environment has it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend.device import SIZED, DeviceProfile
from ..ir.graph import Graph
from .latency import Latency, estimate

MAX_ROUNDS = 30
PULL = 1e-5  # weight of the pull towards the starting profile, per parameter
# Classes fitted as one: 1x1 and k x k convolutions run on the same GEMM kernels.
GEMM = ("pointwise", "conv")


@dataclass(frozen=True)
class Sample:
    """A network and its measured time in seconds."""

    name: str
    graph: Graph
    seconds: float
    batch: int = 1


def group(op_class: str, gemm: tuple[str, ...] = GEMM) -> str:
    """The fitted class an op class belongs to: the first of `gemm` for the
    classes in it (with their sized classes, `conv_3x3`), else itself."""
    sized = SIZED.fullmatch(op_class)
    general = sized.group(1) if sized else op_class
    return gemm[0] if gemm and general in gemm else op_class


def members(
    samples: list[Sample], device: DeviceProfile, gemm: tuple[str, ...] = GEMM
) -> dict[str, list[str]]:
    """The classes with work in the samples, by the fitted class they belong to."""
    out: dict[str, list[str]] = {}
    for klass in sorted(
        {
            op.op_class
            for s in samples
            for op in estimate(s.graph, device, s.batch).ops
            if op.work and op.fused_into is None
        }
    ):
        out.setdefault(group(klass, gemm), []).append(klass)
    return out


def parameters(
    samples: list[Sample],
    device: DeviceProfile,
    overheads: tuple[str, ...],
    gemm: tuple[str, ...] = GEMM,
) -> list[str]:
    """What the fit adjusts: `compute:<class>` for each (fitted) class with work in
    the samples, `tap:<class>` for those with convolution taps, `memory`, `cache`
    (if the profile has one), `overhead` and `overhead:<class>` for the classes
    given their own."""
    groups = sorted(members(samples, device, gemm))
    tapped = sorted(
        {
            group(op.op_class, gemm)
            for s in samples
            for op in estimate(s.graph, device, s.batch).ops
            if op.taps and op.fused_into is None
        }
    )
    names = [f"compute:{c}" for c in groups] + [f"tap:{c}" for c in tapped]
    names.append("memory")
    if device.cache is not None:
        names.append("cache")
    return [*names, "overhead", *(f"overhead:{c}" for c in overheads)]


def values(device: DeviceProfile, names: list[str]) -> list[float]:
    """The profile's value of each parameter, in seconds per unit."""
    out = []
    for name in names:
        kind, _, klass = name.partition(":")
        if kind == "compute":
            out.append(1 / (device.peak_gmacs * 1e9 * device.op(klass).efficiency))
        elif kind == "tap":
            out.append(device.tap_s(klass))
        elif kind == "memory":
            out.append(1 / (device.bandwidth_gbs * 1e9))
        elif kind == "cache":
            out.append(1 / (device.cache.bandwidth_gbs * 1e9))
        elif klass:
            out.append(device.overhead_s(klass))
        else:
            out.append(device.overhead_us * 1e-6)
    return out


def features(
    lat: Latency,
    names: list[str],
    cache_bytes: int | None,
    gemm: tuple[str, ...] = GEMM,
) -> list[float]:
    """A network's time as a linear function of the parameters, with the bounds
    of `lat`: the coefficient of each."""
    index = {name: i for i, name in enumerate(names)}
    row = [0.0] * len(names)
    for op in lat.ops:
        if op.fused_into is not None or not op.op_class:
            continue
        if op.bound == "compute":
            fitted = group(op.op_class, gemm)
            row[index[f"compute:{fitted}"]] += op.work
            if op.taps:
                row[index[f"tap:{fitted}"]] += op.taps
        elif op.bound == "memory":
            in_cache = cache_bytes is not None and op.bytes <= cache_bytes
            row[index["cache" if in_cache else "memory"]] += op.bytes
        own = f"overhead:{op.op_class}"
        row[index[own if own in index else "overhead"]] += 1
    return row


def with_values(
    device: DeviceProfile,
    names: list[str],
    theta: list[float],
    classes: dict[str, list[str]] | None = None,
) -> DeviceProfile:
    """The profile with the fitted parameters (efficiencies above 1 raise the
    peak instead); a fitted class's value goes to each of its `classes`."""
    classes = classes or {}
    compute = {
        n.partition(":")[2]: t
        for n, t in zip(names, theta, strict=True)
        if n.startswith("compute:") and t > 0
    }
    peak = device.peak_gmacs * 1e9
    peak = max([peak, *(1 / t for t in compute.values())])
    ops = dict(device.ops)
    for fitted, t in compute.items():
        for klass in classes.get(fitted, [fitted]):
            if klass not in ops and 1 / (peak * t) >= 0.99995:
                continue  # at the peak, as a class the profile does not name is
            ops[klass] = device.op(klass).model_copy(
                update={"efficiency": _rounded(min(1.0, 1 / (peak * t)))}
            )
    data = device.model_dump()
    data["peak_gmacs"] = _rounded(peak / 1e9)
    data["ops"] = {k: v.model_dump() for k, v in ops.items()}
    for name, t in zip(names, theta, strict=True):
        kind, _, klass = name.partition(":")
        if kind == "tap":
            for member in classes.get(klass, [klass]):
                data["ops"].setdefault(member, {"efficiency": 1.0})
                data["ops"][member]["tap_ns"] = _rounded(t * 1e9)
        elif kind == "memory" and t > 0:
            data["bandwidth_gbs"] = _rounded(1 / t / 1e9)
        elif kind == "cache" and t > 0:
            data["cache"]["bandwidth_gbs"] = _rounded(1 / t / 1e9)
        elif kind == "overhead" and not klass:
            data["overhead_us"] = _rounded(t * 1e6)
        elif kind == "overhead":
            data["ops"].setdefault(klass, {"efficiency": 1.0})
            data["ops"][klass]["overhead_us"] = _rounded(t * 1e6)
    return DeviceProfile.model_validate(data)


def _rounded(value: float) -> float:
    """Four significant digits: a readable file, far below measurement noise."""
    return float(f"{float(value):.4g}")


def by_kernel(
    device: DeviceProfile, samples: list[Sample], general: tuple[str, ...]
) -> DeviceProfile:
    """The profile with a class of its own for each kernel size of the `general`
    classes (depthwise, conv) in the samples, starting from the general one's
    settings: runtimes' kernels differ by size more than MACs say."""
    ops = dict(device.ops)
    for s in samples:
        for op in estimate(s.graph, device, s.batch).ops:
            if op.op_class in general and op.fused_into is None:
                kernel = s.graph.node(op.name)["attrs"]["kernel"]
                ops.setdefault(
                    f"{op.op_class}_{kernel}x{kernel}", device.op(op.op_class)
                )
    return device.model_copy(update={"ops": ops})


def fit(
    samples: list[Sample],
    start: DeviceProfile,
    overheads: tuple[str, ...] = (),
    pull: float = PULL,
    kernels: tuple[str, ...] = ("depthwise",),
    gemm: tuple[str, ...] = GEMM,
) -> DeviceProfile:
    """The profile whose estimates best match the samples' measured times (least
    squares on relative errors), starting from `start`; the `kernels` classes get
    a class per kernel size, the `gemm` classes one MAC rate and tap cost (none
    fitted as one if empty)."""
    import numpy as np

    start = by_kernel(start, samples, kernels)
    names = parameters(samples, start, overheads, gemm)
    classes = members(samples, start, gemm)
    prior = np.array(values(start, names))
    prior[prior == 0] = 1e-6  # an overhead of 0: pull towards a microsecond
    for i, name in enumerate(names):
        if name.startswith("tap:") and not values(start, [name])[0]:
            prior[i] = 1e-10  # no tap cost: pull towards 0.1 ns
    device = start
    bounds = None
    for _ in range(MAX_ROUNDS):
        latencies = [estimate(s.graph, device, s.batch) for s in samples]
        now = [tuple(op.bound for op in lat.ops) for lat in latencies]
        if now == bounds:
            break
        bounds = now
        cache = device.cache.bytes if device.cache else None
        rows = np.array([features(lat, names, cache, gemm) for lat in latencies])
        measured = np.array([s.seconds for s in samples])
        # Unknowns u = theta / prior; rows scaled to relative error.
        a = rows * prior / measured[:, None]
        b = np.ones(len(samples))
        reg = np.sqrt(pull) * np.eye(len(names))
        u = nnls(
            np.vstack([a, reg]),
            np.concatenate([b, np.sqrt(pull) * np.ones(len(names))]),
        )
        device = with_values(device, names, list(u * prior), classes)
    return device


def nnls(a, b, iterations: int | None = None):
    """min ||a x - b|| subject to x >= 0 (Lawson and Hanson's active-set method)."""
    import numpy as np

    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    gradient = a.T @ (b - a @ x)
    for _ in range(iterations or 3 * n):
        if passive.all() or gradient[~passive].max(initial=0) <= 1e-12:
            break
        j = np.argmax(np.where(passive, -np.inf, gradient))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            # Step back to the boundary and drop what reached zero.
            shrinking = passive & (z <= 0)
            alpha = np.min(x[shrinking] / (x[shrinking] - z[shrinking]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0
        gradient = a.T @ (b - a @ x)
    return x


# Specs `bench --calibrate` measures unless given others: shipped specs whose ops
# span the classes a profile tunes (1x1, k x k and depthwise convolutions of 3, 5
# and 7, dense, attention, relu6, hardswish, swish, sigmoid gates, squeeze-excite),
# at sizes that keep a calibration to a few minutes.
CALIBRATION = (
    "v1@width_multiplier=0.5",
    "v2@resolution=160",
    "v3_large",
    "v3_small@resolution=160",
    "v3_small@all_rows.k=7",
    "lcnet_100",
    "mnasnet_small",
    "fbnetc_100@resolution=160",
    "efficientnet_b0@resolution=192",
    "mobilenetv4_conv_small",
    "mobilenetv4_hybrid_medium@resolution=160",
)


def default_set() -> list[str]:
    return list(CALIBRATION)


def described(
    device: DeviceProfile, name: str, result: dict, start: DeviceProfile
) -> DeviceProfile:
    """The fitted profile named, described and sourced by its measurements."""
    m = result["machine"]
    timed = sum("timing" in e for e in result["items"].values())
    sources = [
        f"fitted by mbcompile bench --calibrate to {timed} specs timed with "
        f"{result['runtime']} ({', '.join(f'{k} {v}' for k, v in result['versions'].items())}), "
        f"batch {result['batch']}, {result['threads']} threads",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, flags "
        f"{' '.join(m['flags']) or 'unknown'}; load average "
        f"{m['load_average']['before']} -> {m['load_average']['after']}",
        f"started from device profile {start.name}, whose peak and fusions it keeps",
    ]
    data = device.model_dump()
    data.update(
        name=name,
        description=f"this machine as {result['runtime']} runs it, fitted",
        sources=sources,
        threads=result["threads"],
    )
    return DeviceProfile.model_validate(data)


def residuals(
    samples: list[Sample], start: DeviceProfile, fitted: DeviceProfile
) -> list[str]:
    """A table: each sample's measured time against the estimates before and after."""
    rows = [("spec", "measured ms", f"{start.name} ms", "fitted ms", "error")]
    errors = []
    for s in samples:
        before = estimate(s.graph, start, s.batch).total_s
        after = estimate(s.graph, fitted, s.batch).total_s
        errors.append(abs(after / s.seconds - 1))
        rows.append(
            (
                s.name,
                f"{s.seconds * 1e3:.3f}",
                f"{before * 1e3:.3f}",
                f"{after * 1e3:.3f}",
                f"{100 * (after / s.seconds - 1):+.1f}%",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    errors.sort()
    lines.append(
        f"fit on {len(samples)} specs: median error {100 * errors[len(errors) // 2]:.1f}%, "
        f"worst {100 * errors[-1]:.1f}% (errors on the specs fitted, not a prediction)"
    )
    return lines
