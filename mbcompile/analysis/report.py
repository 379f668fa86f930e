"""Cost reports as text: a terminal table, JSON, CSV and Markdown.

`mbcompile SPEC --report --format table|json|csv|markdown` and `mbcompile costs SPEC`
(which adds `--explain` and `--layers`) print these; `generated/reports/<spec>.md`
is the Markdown form of every canonical spec, kept fresh by `mbcompile generate`.
The numbers all come from cost.py and latency.py (the roofline estimate on a device
profile, by default `phone_cpu`) and the header from the graph's network; nothing
here imports a framework.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap

from ..errors import SpecError
from ..frontend.device import DeviceProfile, load_device
from ..ir.graph import Graph
from ..version import __version__
from .cost import DTYPE_BYTES, SUMMED, Report, report
from .latency import Latency, estimate

FORMATS = ("table", "json", "csv", "markdown")
MIB = 2**20

# The operations MACs leave out, as (field, label): the separate lines of a report.
EXTRA_OPS = (
    ("bn_ops", "batch-norm ops (2 per element)"),
    ("act_ops", "activation ops (1 per element)"),
    ("elementwise_ops", "elementwise ops (add, mul)"),
    ("pool_ops", "pooling ops (1 per input element)"),
)


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def mib(n_bytes: int) -> str:
    return f"{n_bytes / MIB:.2f} MiB"


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "0.0"


def aligned(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    """Rows as aligned text lines, a rule under the first (the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(cells) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(rows[0]), rule, *(line(r) for r in rows[1:])]


def md_table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    header, *body = rows
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(cells) + " |" for cells in [header, tuple(align), *body]]


# ------------------------------------------------------------------------- rows


def block_rows(rep: Report, lat: Latency) -> list[tuple[str, ...]]:
    header = ("#", "block", "type", "stage", "output", "params", "MACs", "MACs %")
    rows = [(*header, "est. ms", "time %", "bound")]
    for b, t in zip(rep.blocks, lat.blocks, strict=True):
        rows.append(
            (
                str(b.index),
                b.name,
                b.type,
                b.stage,
                shape_text(b.shape),
                f"{b.params:,}",
                f"{b.macs:,}",
                share(b.macs, rep.macs),
                f"{t.time_s * 1e3:.3f}",
                share(t.time_s, lat.total_s),
                t.bound,
            )
        )
    return rows


BLOCK_RIGHT = {0, 5, 6, 7, 8, 9}


def macs_label(rep: Report) -> str:
    if any(n.kind == "attention" for n in rep.layers):
        return "MACs (conv + linear + attention)"
    return "MACs (conv + linear)"


def total_rows(rep: Report, lat: Latency) -> list[tuple[str, str]]:
    rows = [
        ("trainable parameters", f"{rep.trainable_params:,}"),
        ("batch-norm statistics", f"{rep.non_trainable_params:,}"),
        (macs_label(rep), f"{rep.macs:,}"),
    ]
    rows += [(label, f"{rep.total(field):,}") for field, label in EXTRA_OPS]
    rows += [
        ("fvcore FlopCountAnalysis (MACs + BN + pooling)", f"{rep.fvcore_flops:,}"),
        ("peak activations (elements)", f"{rep.peak_activation_elements:,}"),
        (f"estimated latency on {lat.device.name} (ms)", f"{lat.total_ms:.3f}"),
    ]
    return rows


def latency_summary(lat: Latency) -> str:
    """What the estimate assumed and where its time goes, in one sentence."""
    d = lat.device
    return (
        f"Latency: a roofline estimate on device profile {d.name} ({d.description}; "
        f"{d.peak_gmacs:g} GMAC/s, {d.bandwidth_gbs:g} GB/s, {d.dtype}), batch "
        f"{lat.batch}: {lat.ops_run} ops run; {share(lat.share('compute'), 1)}% of "
        f"the time in compute-bound ops, {share(lat.share('memory'), 1)}% in "
        f"memory-bound ops, {share(lat.share('overhead'), 1)}% per-op overheads."
    )


def memory_rows(rep: Report) -> list[tuple[str, ...]]:
    return [
        ("memory", *DTYPE_BYTES),
        ("weights", *(mib(rep.weight_bytes(d)) for d in DTYPE_BYTES)),
        (
            "peak activations",
            *(mib(rep.peak_activation_bytes(d)) for d in DTYPE_BYTES),
        ),
    ]


def separable_rows(rep: Report) -> list[tuple[str, ...]]:
    header = (
        "block",
        "k",
        "M",
        "N",
        "output",
        "separable MACs",
        "standard MACs",
        "ratio",
        "1/N + 1/k²",
    )
    rows = [header]
    for s in rep.separable:
        rows.append(
            (
                s.block,
                str(s.kernel),
                str(s.in_c) + (f"×{s.multiplier}" if s.multiplier != 1 else ""),
                str(s.out_c),
                shape_text(s.out_hw),
                f"{s.separable_macs:,}",
                f"{s.standard_macs:,}",
                f"{float(s.ratio):.4f}",
                f"{float(s.paper_ratio):.4f}",
            )
        )
    if rep.separable:
        separable = sum(s.separable_macs for s in rep.separable)
        standard = sum(s.standard_macs for s in rep.separable)
        rows.append(
            (
                "all",
                "",
                "",
                "",
                "",
                f"{separable:,}",
                f"{standard:,}",
                f"{separable / standard:.4f}",
                "",
            )
        )
    return rows


SEPARABLE_RIGHT = {1, 2, 3, 5, 6, 7, 8}

EXPLAIN_INTRO = (
    "Each depthwise k×k convolution and the 1×1 pointwise convolution after it "
    "(in inverted residuals and bnecks: the depthwise and projection convs, "
    "squeeze-excite left out), against one standard k×k convolution from the same "
    "M input channels to the same N output channels at the same output size. "
    "MobileNet V1 (section 3.1) gives the ratio as 1/N + 1/k²."
)


def explain_summary(rep: Report) -> str:
    separable = sum(s.separable_macs for s in rep.separable)
    standard = sum(s.standard_macs for s in rep.separable)
    sep_params = sum(s.separable_params for s in rep.separable)
    std_params = sum(s.standard_params for s in rep.separable)
    return (
        f"Standard convolutions in their place would cost {standard:,} MACs instead "
        f"of {separable:,} ({standard / separable:.1f}× more), and hold "
        f"{std_params:,} weights instead of {sep_params:,} "
        f"({std_params / sep_params:.1f}× more)."
    )


# ---------------------------------------------------------------------- formats


def table(
    rep: Report, lat: Latency, *, explain: bool = False, layers: bool = False
) -> str:
    out = [f"{rep.name} @ {rep.resolution}x{rep.resolution}", ""]
    out += aligned(block_rows(rep, lat), BLOCK_RIGHT)
    out.append("")
    width = max(len(label) for label, _ in total_rows(rep, lat))
    out += [f"{label:<{width}}  {value:>15}" for label, value in total_rows(rep, lat)]
    out += ["", *textwrap.wrap(latency_summary(lat), 88), ""]
    out += aligned(memory_rows(rep), {1, 2, 3})
    if layers:
        out += ["", *aligned(layer_rows(rep, lat), {5, 6, 7, 8, 9, 10})]
    if explain:
        out += ["", "depthwise-separable vs standard convolution", ""]
        if rep.separable:
            out += aligned(separable_rows(rep), SEPARABLE_RIGHT)
            out += ["", explain_summary(rep)]
        else:
            out.append("(no depthwise convolution followed by a 1x1 convolution)")
    return "\n".join(out) + "\n"


def layer_rows(rep: Report, lat: Latency) -> list[tuple[str, ...]]:
    rows = [
        (
            "op",
            "kind",
            "block",
            "output",
            "params",
            "MACs",
            "other ops",
            "tensor fp32",
            "live fp32",
            "est. µs",
            "bound",
        )
    ]
    for n, t in zip(rep.layers, lat.ops, strict=True):
        other = sum(getattr(n, f) for f, _ in EXTRA_OPS)
        rows.append(
            (
                n.name,
                n.kind,
                "" if n.block is None else str(n.block),
                shape_text(n.shape),
                f"{n.params:,}",
                f"{n.macs:,}",
                f"{other:,}",
                mib(n.activations * 4),
                mib(n.live * 4),
                f"{t.time_s * 1e6:.1f}" if t.fused_into is None else "fused",
                t.bound,
            )
        )
    return rows


def to_json(rep: Report, lat: Latency) -> str:
    return json.dumps({**rep.to_json(), "latency": lat.to_json()}, indent=2) + "\n"


CSV_FIELDS = (
    "index",
    "name",
    "type",
    "stage",
    "output",
    *SUMMED,
    "peak_live",
    "est_ms",
    "bound",
)


def to_csv(rep: Report, lat: Latency) -> str:
    """One row per block and a final `total` row (spreadsheet-friendly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for b, t in zip(rep.blocks, lat.blocks, strict=True):
        writer.writerow(
            (
                b.index,
                b.name,
                b.type,
                b.stage,
                shape_text(b.shape),
                *(getattr(b, f) for f in SUMMED),
                b.peak_live,
                f"{t.time_s * 1e3:.6f}",
                t.bound,
            )
        )
    writer.writerow(
        (
            "",
            "total",
            "",
            "",
            "",
            *(rep.total(f) for f in SUMMED),
            rep.peak_activation_elements,
            f"{lat.total_ms:.6f}",
            "",
        )
    )
    return buffer.getvalue()


def markdown(
    graph: Graph, rep: Report | None = None, lat: Latency | None = None
) -> str:
    """The full report: totals, memory, blocks with their estimated latency, the
    separable explanation and a Mermaid block graph. Deterministic, so it can be
    committed."""
    from .diagram import mermaid

    rep = rep or report(graph)
    lat = lat or estimate(graph, load_device())
    net = graph.network
    out = [
        f"# {rep.name}: costs at {rep.resolution}×{rep.resolution}",
        "",
        f"Width multiplier {net.width_multiplier}, {net.num_classes} classes, "
        f"batch 1. Generated by mbcompile {__version__} from `{net.source}` "
        f"(spec sha256 `{net.content_hash[:12]}`); counted from the graph IR.",
        "",
        "## Totals",
        "",
        *md_table([("count", "value"), *total_rows(rep, lat)], {1}),
        "",
        "MACs follow the papers (convolutions and dense layers, and attention's "
        "two matrix products; bias, batch norm, softmax, activations, adds and "
        "pooling excluded); the other operations are listed "
        "separately. fvcore's FlopCountAnalysis adds batch norm (2 per element in "
        "eval mode) and adaptive average pooling (1 per input element) to the MACs "
        "and ignores activations and elementwise ops.",
        "",
        latency_summary(lat),
        "",
        "## Memory",
        "",
        *md_table(memory_rows(rep), {1, 2, 3}),
        "",
        "Weights include the batch-norm statistics. Peak activations: the largest "
        "set of tensors alive at once when the ops run in order, each freed after "
        "its last use and none computed in place.",
        "",
        "## Blocks",
        "",
        *md_table(block_rows(rep, lat), BLOCK_RIGHT),
        "",
        "## Depthwise-separable vs standard convolution",
        "",
    ]
    if rep.separable:
        out += [EXPLAIN_INTRO, "", *md_table(separable_rows(rep), SEPARABLE_RIGHT)]
        out += ["", explain_summary(rep)]
    else:
        out.append("This network has no depthwise convolution followed by a 1×1 one.")
    out += ["", "## Block graph", "", "```mermaid", mermaid(graph, rep).rstrip(), "```"]
    return "\n".join(out) + "\n"


def render(
    graph: Graph,
    fmt: str = "table",
    *,
    explain: bool = False,
    layers: bool = False,
    device: DeviceProfile | None = None,
) -> str:
    """The report in a format; latency estimated on `device` (default:
    `frontend.device.DEFAULT_DEVICE`)."""
    rep = report(graph)
    lat = estimate(graph, device or load_device())
    if fmt == "table":
        return table(rep, lat, explain=explain, layers=layers)
    if fmt == "json":
        return to_json(rep, lat)
    if fmt == "csv":
        return to_csv(rep, lat)
    if fmt == "markdown":
        return markdown(graph, rep, lat)
    raise SpecError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
