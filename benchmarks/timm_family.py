"""timm's EfficientNet/MobileNet family against specs/timm/, model by model, written
to docs/timm_models.md.

Every spec in specs/timm/ is compiled and compared with timm's model of the same
name by tests/timm_family.py's `compare` (the comparison the tests use): trainable
parameters, batch-norm statistics and MACs at the spec's resolution; timm's
state_dict keys, order and shapes, loaded strictly; logits in PyTorch and in Keras
(weights converted by `mbcompile weights`) at a small resolution, within the tests'
one tolerance. Models over 60M parameters are compared on the meta device
(structure only). The models of timm's mobilenetv3.py, efficientnet.py and
hardcorenas.py without a spec are listed with what they need.

    python benchmarks/timm_family.py [--models NAME ... [--update]]
        [--resolution 120] [--no-keras] [--output docs/timm_models.md]

A run over the whole family takes tens of minutes on 2 cores (timm, PyTorch and a
Keras model per spec). With --models the table holds those models only; with
--models and --update their rows replace theirs in the existing table (the other
rows, and the counts over all of them, read back from it), and the header says
which rows came from which command. Exit code 1 if any differs.

    python benchmarks/timm_family.py --update --models efficientnet_cc_b0_4e ...
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
import timm_family  # the comparison the tests use
from helpers import TOLERANCE
from reference_models import import_timm

MODULES = ("mobilenetv3", "efficientnet", "hardcorenas")  # timm.models.<module>
OUTPUT = ROOT / "docs" / "timm_models.md"

# What the models of those modules that have no spec yet need (issue 21's table).
NEEDS = {
    "cn": "a residual conv-bn-act row (timm's `cn` block with its skip)",
    "mix": "MixConv (depthwise kernels split over channel groups) and grouped "
    "pointwise convs",
    "cc": "CondConv (per-sample mixtures of expert kernels)",
    "groups": "grouped convolutions by group size",
    "gn": "GroupNorm network-wide",
    "gn_groups": "GroupNorm network-wide and grouped convolutions",
    "norms": "GroupNorm / LayerNorm / EvoNorm-S0 network-wide",
    "pruned": "explicit per-layer widths (timm's pruned models)",
    "s2d": "squeeze-excite in fused rows and a space-to-depth stem block",
    "aa": "anti-aliased downsampling (AvgPool 2x2 or BlurPool after a stride-1 conv)",
    "fbnetv3": "a head conv without bias and fbnetv3's squeeze-excite rounding",
    "rw": "a head conv without bias and each block's activation inside its "
    "squeeze-excite",
    "gc": "Global Context attention and a residual conv-bn-act row",
    "v2b3": "a residual conv-bn-act row, and width rounding without timm's 90% "
    "floor (round_limit=0)",
}
MISSING = {
    **dict.fromkeys(
        [
            "efficientnetv2_s",
            "efficientnetv2_m",
            "efficientnetv2_l",
            "efficientnetv2_xl",
            "efficientnetv2_rw_t",
            "tf_efficientnetv2_s",
            "tf_efficientnetv2_m",
            "tf_efficientnetv2_l",
            "tf_efficientnetv2_xl",
            "tf_efficientnetv2_b1",
            "tf_efficientnetv2_b2",
        ],
        "cn",
    ),
    "tf_efficientnetv2_b3": "v2b3",
    "gc_efficientnetv2_rw_t": "gc",
    **dict.fromkeys(
        ["mixnet_s", "mixnet_m", "mixnet_l", "mixnet_xl", "mixnet_xxl"], "mix"
    ),
    **dict.fromkeys(["tf_mixnet_s", "tf_mixnet_m", "tf_mixnet_l"], "mix"),
    **dict.fromkeys(
        [
            "efficientnet_cc_b0_4e",
            "efficientnet_cc_b0_8e",
            "efficientnet_cc_b1_8e",
            "tf_efficientnet_cc_b0_4e",
            "tf_efficientnet_cc_b0_8e",
            "tf_efficientnet_cc_b1_8e",
        ],
        "cc",
    ),
    **dict.fromkeys(
        [
            "mobilenet_edgetpu_v2_xs",
            "mobilenet_edgetpu_v2_s",
            "mobilenet_edgetpu_v2_m",
            "mobilenet_edgetpu_v2_l",
            "efficientnet_b0_g16_evos",
        ],
        "groups",
    ),
    **dict.fromkeys(["efficientnet_b0_gn", "efficientnet_b3_gn"], "gn"),
    **dict.fromkeys(["efficientnet_b0_g8_gn", "efficientnet_b3_g8_gn"], "gn_groups"),
    **dict.fromkeys(
        ["test_efficientnet_gn", "test_efficientnet_ln", "test_efficientnet_evos"],
        "norms",
    ),
    **dict.fromkeys(
        ["efficientnet_b1_pruned", "efficientnet_b2_pruned", "efficientnet_b3_pruned"],
        "pruned",
    ),
    **dict.fromkeys(
        ["efficientnet_x_b3", "efficientnet_x_b5", "efficientnet_h_b5"], "s2d"
    ),
    **dict.fromkeys(
        [
            "mobilenetv4_conv_aa_medium",
            "mobilenetv4_conv_aa_large",
            "mobilenetv4_conv_blur_medium",
            "efficientnet_blur_b0",
        ],
        "aa",
    ),
    **dict.fromkeys(["fbnetv3_b", "fbnetv3_d", "fbnetv3_g"], "fbnetv3"),
    "mobilenetv3_rw": "rw",
}


def timm_names() -> list[str]:
    timm = import_timm()
    return sorted({n for m in MODULES for n in timm.list_models(module=m)})


def diff(value: float | None) -> str:
    return "—" if value is None else f"{value:.1e}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def row(result: timm_family.Comparison, family: str) -> str:
    verdict = result.verdict.replace("|", "\\|")
    at = "meta" if result.logit_resolution is None else str(result.logit_resolution)
    return (
        f"| `{result.name}` | {family} | {result.resolution} | "
        f"{count(result.params)} | {count(result.macs)} | {at} | "
        f"{diff(result.torch_diff)} | {diff(result.keras_diff)} | {verdict} |"
    )


FLOAT64_COLUMNS = ("timm float32", "keras float32", "torch float64", "keras float64")


def document(results, families, missing, args, total: int) -> str:
    import torch

    timm = import_timm()
    exact = sum(r.exact and r.logit_resolution is not None for r in results)
    meta = sum(r.exact and r.logit_resolution is None for r in results)
    differ = len(results) - exact - meta
    worst_torch = max((r.torch_diff or 0.0) for r in results)
    worst_keras = max((r.keras_diff or 0.0) for r in results)
    command = "python benchmarks/timm_family.py"
    if args.resolution != timm_family.LOGIT_RESOLUTION:
        command += f" --resolution {args.resolution}"
    if args.no_keras:
        command += " --no-keras"
    written = f"`{command}`"
    if args.update:
        written = (
            f"{args.written_by}; the rows of {', '.join(f'`{n}`' for n in args.models)}"
            f" by `{command} --update --models {' '.join(args.models)}`"
        )
    elif args.models:
        written = f"`{command} --models {' '.join(args.models)}`"
    lines = [
        "# timm's EfficientNet/MobileNet family as specs",
        "",
        "<!-- Generated by benchmarks/timm_family.py — do not edit. -->",
        "",
        f"Written by {written}, with timm {timm.__version__} and torch "
        f"{torch.__version__.split('+')[0]}: each spec in `specs/timm/` compiled and "
        "compared with timm's model of the same name (`pretrained=False`) by "
        "`tests/timm_family.py`, the comparison the tests use.",
        "",
        f"**{exact + meta} of {len(results)} specs reproduce timm exactly**: "
        f"{exact} in both frameworks, {meta} structurally on the meta device "
        f"(over {timm_family.META_ABOVE // 1_000_000}M parameters), {differ} "
        f"differ. timm's `mobilenetv3.py`, `efficientnet.py` and `hardcorenas.py` "
        f"register {total} models; {len(missing)} have no spec yet (below).",
        "",
        "- **params / MACs**: trainable parameters and multiply-accumulates "
        "(convolutions, dense layers and attention products) at the model's "
        "resolution, timm's default input size; ours equal timm's (a forward-hook "
        "count over timm's own modules), as do the batch-norm statistics.",
        "- **state_dict**: the generated PyTorch model's keys are timm's, in timm's "
        "order and shapes; timm's state_dict loads with `strict=True`.",
        f"- **torch / keras**: the largest logit difference, max |timm − ours| / "
        f"max(1, max |timm|), at {args.resolution}×{args.resolution} (compiled at "
        "that resolution), timm's random weights and batch-norm statistics "
        "measured on random images; Keras gets the weights through `mbcompile "
        f"weights`. Exact means at most {TOLERANCE:g}. Worst here: "
        f"{worst_torch:.1e} (PyTorch), {worst_keras:.1e} (Keras).",
        "- **meta**: over the parameter limit: counts, keys, shapes and a strict "
        "load (`assign=True`) on PyTorch's meta device, no logits.",
        "",
        "| model | family | resolution | params | MACs | logits at | torch | keras "
        "| verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *(row(r, families[r.name]) for r in results),
    ]
    rounding = [r for r in results if r.float64]
    if rounding:
        lines += [
            "",
            "## Float32 differences",
            "",
            "The models whose logits differ over the tolerance, run again with the "
            "same weights in float64: each column is the difference from timm's "
            "float64 logits, measured as above (`tests/timm_family.py`'s "
            "`float64_differences`; `pytest -m timm_family -k rounding`). Equal in "
            "float64 means the spec computes timm's function and the float32 "
            "difference is rounding, of the size of timm's own.",
            "",
            "| model | " + " | ".join(FLOAT64_COLUMNS) + " |",
            "|---|" + "---:|" * len(FLOAT64_COLUMNS),
            *(
                f"| `{r.name}` | "
                + " | ".join(f"{r.float64[k]:.1e}" for k in FLOAT64_COLUMNS)
                + " |"
                for r in rounding
            ),
        ]
    if missing:
        lines += [
            "",
            "## Not yet written as specs",
            "",
            "The spec language cannot yet express these (issue 21):",
            "",
            "| model | needs |",
            "|---|---|",
            *(
                f"| `{n}` | {NEEDS[MISSING[n]] if n in MISSING else '?'} |"
                for n in missing
            ),
        ]
    return "\n".join(lines) + "\n"


ROW = re.compile(
    r"^\| `(?P<name>[^`]+)` \| (?P<family>[^|]+) \| (?P<resolution>\d+) \| "
    r"(?P<params>[\d,—]+) \| (?P<macs>[\d,—]+) \| (?P<at>\w+) \| "
    r"(?P<torch>[^|]+) \| (?P<keras>[^|]+) \| (?P<verdict>.*) \|$"
)
WRITTEN = re.compile(r"^Written by (?P<by>.*?),? with timm ")


def read_table(text: str):
    """The results, families and first line's "written by" of an existing table
    (as `document` wrote it), for --update."""

    def number(cell: str):
        return None if cell == "—" else int(cell.replace(",", ""))

    def value(cell: str):
        return None if cell == "—" else float(cell)

    results, families, written_by = {}, {}, None
    in_float64 = False
    for line in text.splitlines():
        if (found := WRITTEN.match(line)) and written_by is None:
            written_by = found["by"]
        if line.startswith("## "):
            in_float64 = line == "## Float32 differences"
        if in_float64 and line.startswith("| `"):
            name, *cells = [c.strip(" `") for c in line.strip("|").split("|")]
            results[name].float64 = dict(
                zip(FLOAT64_COLUMNS, map(float, cells), strict=True)
            )
        elif found := ROW.match(line):
            verdict = found["verdict"].replace("\\|", "|")
            problems = []
            if verdict.startswith("differs: "):
                problems = verdict.removeprefix("differs: ").split("; ")
            results[found["name"]] = timm_family.Comparison(
                found["name"],
                int(found["resolution"]),
                params=number(found["params"]),
                macs=number(found["macs"]),
                logit_resolution=None if found["at"] == "meta" else int(found["at"]),
                torch_diff=value(found["torch"].strip()),
                keras_diff=value(found["keras"].strip()),
                problems=problems,
            )
            families[found["name"]] = found["family"].strip()
    if written_by is None:
        raise SystemExit("--update: no 'Written by' line in the existing table")
    return results, families, written_by


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", help="these specs only")
    parser.add_argument("--resolution", type=int, default=timm_family.LOGIT_RESOLUTION)
    parser.add_argument("--no-keras", action="store_true", help="PyTorch only")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --models: replace their rows in the existing --output",
    )
    args = parser.parse_args(argv)
    if args.update and not args.models:
        parser.error("--update needs --models")
    if args.update:  # read before the run: a table that cannot be read stops it
        previous, previous_families, args.written_by = read_table(
            args.output.read_text()
        )

    from mbcompile import compiler

    names = args.models or timm_family.names()
    everything = timm_names()
    missing = [n for n in everything if n not in set(timm_family.names())]
    results, families = [], {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for i, name in enumerate(names, 1):
            began = time.perf_counter()
            workdir = Path(scratch) / name
            workdir.mkdir()
            families[name] = "?"
            try:
                loaded, _ = compiler.load_and_expand(timm_family.spec_path(name))
                families[name] = loaded.spec.family
                result = timm_family.compare(
                    name, workdir, resolution=args.resolution, keras=not args.no_keras
                )
            except Exception as exc:  # recorded as a difference; the run goes on
                result = timm_family.Comparison(name, 0)
                result.problems.append(f"error: {type(exc).__name__}: {exc}")
            if result.problems and all("logits differ" in m for m in result.problems):
                # Rounding or a wrong function? The same weights in float64.
                result.float64 = timm_family.float64_differences(
                    name, workdir, resolution=args.resolution
                )
            results.append(result)
            print(
                f"[{i}/{len(names)}] {name}: {result.verdict} "
                f"(torch {diff(result.torch_diff)}, keras {diff(result.keras_diff)}; "
                f"{time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    rerun = results
    if args.update:  # the rerun rows in place of theirs, the others as they were
        updated = {r.name: r for r in results}
        results = [updated.get(name, r) for name, r in previous.items()]
        results += [r for r in rerun if r.name not in previous]
        families = {**previous_families, **families}
    text = document(results, families, missing, args, len(everything))
    args.output.write_text(text)
    exact = sum(r.exact for r in rerun)
    print(
        f"{exact} of {len(rerun)} exact; {len(missing)} of {len(everything)} timm "
        f"models without a spec; {time.perf_counter() - start:.0f} s; wrote "
        f"{args.output}"
    )
    return 0 if exact == len(rerun) else 1


if __name__ == "__main__":
    raise SystemExit(main())
