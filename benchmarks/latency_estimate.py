"""How well does the latency estimate predict measured latency, against MACs alone?

Measures TFLite (LiteRT with XNNPACK; by default 2 threads, batch 1, float32)
for more than 30 variants of the canonical and timm specs chosen to be hard for a
MAC count: groups at (nearly) equal MACs that differ in what MACs do not see —
resolution against width, kernel size, activation (relu, hardswish, swish),
squeeze-excite, fused against depthwise blocks, attention — plus the specs of
`mbcompile bench --calibrate`'s default set. Measuring goes through `mbcompile
bench`'s machinery (random weights, export, check against eager, one child process,
models timed round-robin).

Then, on the variants (never on the data a prediction is scored on):

(a) MACs alone: Spearman's rank correlation of MACs with the measured times, and an
    affine fit time = a * MACs + b, leave-one-out (fitted on the other variants);
(b) the calibrated roofline estimate, leave-one-out: the device profile fitted
    (`analysis/calibrate.py`, as `bench --calibrate` does) to all other variants,
    the held-out one predicted (1x1 and k x k convolutions share one MAC rate and
    a cost per kernel tap); also in three other forms (one efficiency for all
    depthwise kernel sizes; own overheads for the classes of small ops; 1x1 and
    k x k convolutions fitted apart);
(c) the profile fitted to the calibration set alone, predicting the variants not
    in it (what a user gets from `mbcompile bench --calibrate`);
(d) the shipped profiles as they are (uncalibrated).

Reported: Spearman's rho, median and worst relative error of each. Goal for (b):
rho >= 0.97, median <= 5%, worst <= 12%.

Raw measurements go to --json (and `--from-json` redoes the analysis without
measuring). On a busy machine medians are noisy; `--statistic p10` scores the
10th percentile instead.

    python benchmarks/latency_estimate.py [--threads 2] [--batch 1]
        [--json latency_estimate.json] [--from-json FILE] [--statistic median]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from _common import NOISE_NOTE, ROOT, header

sys.path.insert(0, str(ROOT))
from mbcompile import compiler
from mbcompile.analysis import calibrate
from mbcompile.analysis.cost import report
from mbcompile.analysis.latency import estimate
from mbcompile.api import bundled_specs
from mbcompile.bench.run import Item, bench
from mbcompile.bench.timing import Budget
from mbcompile.frontend.device import bundled_devices, dump_device, load_device

RELU = ["all_rows.act=relu", "stem.act=relu", "head.conv.act=relu"]
# (group, spec, overrides): groups hold variants of about equal MACs.
VARIANTS = [
    ("~570M", "v1", []),
    ("~570M", "efficientnet_b1", ["resolution=224"]),
    ("~320M", "v1", ["width_multiplier=0.75"]),
    ("~300M", "v1", ["resolution=160"]),
    ("~300M", "v2", []),
    ("~300M", "mnasnet_100", []),
    ("~300M", "v2", ["all_rows.se=true"]),
    ("~390M", "v2", ["resolution=256"]),
    ("~390M", "efficientnet_b0", []),
    ("~390M", "efficientnet_b0", ["all_rows.se=false"]),
    ("~390M", "efficientnet_b0", [*RELU, "squeeze_excite.act=relu"]),
    ("~390M", "efficientnet_lite0", []),
    ("~390M", "fbnetc_100", []),
    ("~430M", "v2", ["width_multiplier=1.4", "resolution=192"]),
    (
        "~490M",
        "v2",
        [
            "stages.1.block=fused_inverted_residual",
            "stages.2.block=fused_inverted_residual",
        ],
    ),
    ("~490M", "mobilenetv4_hybrid_medium", ["resolution=160"]),
    ("~340M", "v2", ["all_rows.k=5"]),
    ("~200M", "v2", ["width_multiplier=0.75"]),
    ("~200M", "v2", ["width_multiplier=0.5", "resolution=320"]),
    ("~200M", "v3_large_minimalistic", []),
    ("~200M", "mobilenetv4_conv_small", []),
    ("~215M", "v3_large", []),
    ("~215M", "v3_large", [*RELU, "head.hidden.act=relu"]),
    ("~215M", "v3_large", ["all_rows.se=false"]),
    ("~215M", "mobilenetv3_large_100", []),
    ("~270M", "v3_large", ["all_rows.k=7"]),
    ("~70M", "v3_small", ["all_rows.k=7"]),
    ("~270M", "v3_large", ["resolution=256"]),
    ("~240M", "mobilenetv4_conv_small", ["resolution=256"]),
    ("~140M", "v3_large", ["width_multiplier=0.75"]),
    ("~155M", "lcnet_100", []),
    ("~110M", "v3_small", ["resolution=320"]),
    ("~60M", "v3_small", []),
    ("~60M", "v3_small_minimalistic", []),
    ("~60M", "mnasnet_small", []),
    ("~830M", "mobilenetv4_conv_medium", ["resolution=224"]),
    ("~970M", "mobilenetv4_hybrid_medium", ["resolution=224"]),
]


def label(spec: str, sets: list[str]) -> str:
    return spec + ("@" + ",".join(sets) if sets else "")


def unique_models(only: str = "") -> list[tuple[str, str, list[str]]]:
    """(label, spec, overrides) of the variants and the calibration set, once each
    (those whose label contains `only`)."""
    seen, out = set(), []
    wanted = [(spec, sets) for _, spec, sets in VARIANTS]
    for text in calibrate.CALIBRATION:
        spec, _, sets = text.partition("@")
        wanted.append((spec, sets.split(",") if sets else []))
    for spec, sets in wanted:
        name = label(spec, sets)
        if name not in seen and only in name:
            seen.add(name)
            out.append((name, spec, sets))
    return out


def graph_of(spec: str, sets: list[str]):
    return compiler.load_and_expand(bundled_specs()[spec], sets)[1]


# ----------------------------------------------------------------------- measure


def measure(args) -> dict:
    models = unique_models(args.only)
    graphs = {name: graph_of(spec, sets) for name, spec, sets in models}
    items = [
        Item(
            name, compiler.generate(graphs[name], "keras"), graphs[name].shape("input")
        )
        for name, _, _ in models
    ]
    budget = Budget(
        precision=args.precision, max_s=args.max_time, min_runs=args.min_runs
    )
    data = {"runtime": args.runtime, "threads": args.threads, "batch": args.batch}
    data["models"] = {}
    for start in range(0, len(items), args.chunk):
        chunk = items[start : start + args.chunk]
        print(f"measuring {start + 1}-{start + len(chunk)} of {len(items)}", flush=True)
        result = bench(chunk, args.runtime, args.batch, args.threads, budget)
        data.setdefault("machine", []).append(result["machine"])
        data["versions"] = result["versions"]
        data["models"].update(result["items"])
        if result.get("interrupted"):
            data["interrupted"] = True
            break
    return data


# ----------------------------------------------------------------------- analyse


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / math.sqrt(
        sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)
    )


def scores(predicted: list[float], measured: list[float]) -> dict:
    errors = sorted(abs(p / m - 1) for p, m in zip(predicted, measured, strict=True))
    return {
        "spearman": spearman(predicted, measured),
        "median_error": statistics.median(errors),
        "worst_error": errors[-1],
    }


def affine_loo(macs: list[float], measured: list[float]) -> list[float]:
    """Leave-one-out predictions of time = a * MACs + b, fitted on relative errors
    (as the roofline is): rows (MACs / t, 1 / t) against 1."""
    import numpy as np

    x, y = np.array(macs, dtype=float), np.array(measured)
    out = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        rows = np.stack([x[keep] / y[keep], 1 / y[keep]], axis=1)
        (a, b), *_ = np.linalg.lstsq(rows, np.ones(keep.sum()), rcond=None)
        out.append(float(a * x[i] + b))
    return out


def roofline_loo(samples, start, options: dict) -> list[float]:
    out = []
    for i, held in enumerate(samples):
        rest = [s for j, s in enumerate(samples) if j != i]
        fitted = calibrate.fit(rest, start, **options)
        out.append(estimate(held.graph, fitted).total_s)
    return out


# Classes of small ops (squeeze-excite's pool, gate and multiply; attention's
# reshapes and transposes) that may cost more per op than a convolution.
SMALL_OPS = ("pool", "mul", "hardsigmoid", "sigmoid", "attention")


def analyse(data: dict, args) -> dict:
    stat = f"{args.statistic}_ms"
    names = [label(spec, sets) for _, spec, sets in VARIANTS]
    timed = {
        n: e["timing"][stat] / 1e3 for n, e in data["models"].items() if "timing" in e
    }
    missing = [n for n in names if n not in timed]
    names = [n for n in names if n in timed]
    graphs = {n: graph_of(*split(n)) for n in timed}
    measured = [timed[n] for n in names]
    macs = [report(graphs[n]).macs for n in names]
    start = load_device(args.start)
    samples = [calibrate.Sample(n, graphs[n], timed[n]) for n in names]
    results = {"statistic": args.statistic, "missing": missing, "variants": names}
    predictions = {"MACs, affine fit (leave-one-out)": affine_loo(macs, measured)}
    # The fit as `bench --calibrate` makes it (a class per depthwise kernel size,
    # one overhead), and two other forms of the model.
    for title, options in (
        ("roofline, as bench --calibrate fits it (leave-one-out)", {}),
        ("roofline, one depthwise class (leave-one-out)", {"kernels": ()}),
        (
            "roofline, small ops' own overheads (leave-one-out)",
            {"overheads": SMALL_OPS},
        ),
        ("roofline, 1x1 and kxk convs apart (leave-one-out)", {"gemm": ()}),
    ):
        print(f"fitting: {title} ...", flush=True)
        predictions[title] = roofline_loo(samples, start, options)
    calibration = [t for t in calibrate.CALIBRATION if t in timed]
    fitted = None
    if len(calibration) >= 4:
        cal_samples = [calibrate.Sample(n, graphs[n], timed[n]) for n in calibration]
        fitted = calibrate.fit(cal_samples, start)
        outside = [n for n in names if n not in calibration]
        results["calibration_set_fit"] = {
            "profile": dump_device(fitted),
            "scored_on": outside,
            **scores(
                [estimate(graphs[n], fitted).total_s for n in outside],
                [timed[n] for n in outside],
            ),
        }
    for device in sorted(bundled_devices()):
        profile = load_device(device)
        if profile.dtype == "float32":
            predictions[f"shipped profile {device} (uncalibrated)"] = [
                estimate(graphs[n], profile).total_s for n in names
            ]
    results["scores"] = {k: scores(v, measured) for k, v in predictions.items()}
    results["scores"]["MACs alone (rank only)"] = {"spearman": spearman(macs, measured)}
    results["per_variant"] = {
        n: {
            "measured_ms": timed[n] * 1e3,
            "macs": m,
            **{k: v[i] * 1e3 for k, v in predictions.items()},
        }
        for i, (n, m) in enumerate(zip(names, macs, strict=True))
    }
    full = calibrate.fit(samples, start)
    measured_as = {**data, "machine": data["machine"][0], "items": data["models"]}
    results["profile_fitted_to_all_variants"] = dump_device(
        calibrate.described(full, "fitted_to_variants", measured_as, start)
    )
    return results


def split(name: str) -> tuple[str, list[str]]:
    spec, _, sets = name.partition("@")
    return spec, sets.split(",") if sets else []


def show(results: dict, data: dict) -> None:
    header(f"per variant ({results['statistic']} of the timed calls)")
    keys = list(next(iter(results["per_variant"].values())))[2:]
    short = {k: k.split(",")[0].split(" (")[0] for k in keys}
    print(
        f"{'variant':72s} {'MACs':>7s} {'measured':>9s}  "
        + "  ".join(f"{short[k][:18]:>18s}" for k in keys)
    )
    for name, row in results["per_variant"].items():
        cells = [
            f"{row[k]:8.2f} ({100 * (row[k] / row['measured_ms'] - 1):+5.1f}%)"
            for k in keys
        ]
        print(
            f"{name[:72]:72s} {row['macs'] / 1e6:6.0f}M {row['measured_ms']:8.2f}  "
            + "  ".join(f"{c:>18s}" for c in cells)
        )
    header(
        "scores over the variants (goal for the calibrated estimate: rho >= 0.97, median <= 5%, worst <= 12%)"
    )
    for title, s in results["scores"].items():
        parts = [f"rho {s['spearman']:.3f}"]
        if "median_error" in s:
            parts += [
                f"median {100 * s['median_error']:.1f}%",
                f"worst {100 * s['worst_error']:.1f}%",
            ]
        print(f"{title:58s} " + ", ".join(parts))
    if "calibration_set_fit" in results:
        c = results["calibration_set_fit"]
        print(
            f"{'profile fitted to the calibration set, on the other variants':58s} "
            f"rho {c['spearman']:.3f}, median {100 * c['median_error']:.1f}%, "
            f"worst {100 * c['worst_error']:.1f}% ({len(c['scored_on'])} variants)"
        )
    if results["missing"]:
        print("not timed (failed or interrupted): " + ", ".join(results["missing"]))
    header("profile fitted to all variants")
    print(results["profile_fitted_to_all_variants"])
    for m in data.get("machine", []):
        print(
            f"machine: {m['cpu']}, {m['usable_cpus']} CPUs, load average {m['load_average']}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runtime", default="tflite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", type=float, default=0.01)
    parser.add_argument("--max-time", type=float, default=60.0)
    parser.add_argument("--min-runs", type=int, default=30)
    parser.add_argument(
        "--chunk",
        type=int,
        default=64,
        help="models per child process (one by default: processes drift 5-10%%)",
    )
    parser.add_argument(
        "--statistic", choices=("median", "p10", "low"), default="median"
    )
    parser.add_argument(
        "--start", default="desktop_avx2", help="profile fits start from"
    )
    parser.add_argument("--json", type=Path, help="save raw measurements and results")
    parser.add_argument("--from-json", type=Path, help="analyse saved measurements")
    parser.add_argument(
        "--only", default="", help="measure only models whose label contains this"
    )
    args = parser.parse_args(argv)
    print(NOISE_NOTE)
    begin = time.perf_counter()
    if args.from_json:
        data = json.loads(args.from_json.read_text())["measurements"]
    else:
        data = measure(args)
        if args.json:  # raw measurements first: the analysis may be redone
            args.json.write_text(json.dumps({"measurements": data}, indent=1) + "\n")
    results = analyse(data, args)
    show(results, data)
    if args.json:
        args.json.write_text(
            json.dumps({"measurements": data, "results": results}, indent=1) + "\n"
        )
        print(f"raw figures: {args.json}")
    print(f"total {time.perf_counter() - begin:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
