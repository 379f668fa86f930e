"""Pictures of costs with matplotlib, an optional extra (`pip install 'mbcompile[plot]'`).

matplotlib is imported only when a picture is drawn, so the compiler and the text
reports never pay for it; without it, drawing is a bad-input error (exit 2) that
says how to install it. Figures are built with `matplotlib.figure.Figure` directly
(no pyplot, no global state, no display needed) and returned as bytes, which the
caller writes through the one output path (`mbcompile.files`).

A picture holds at most 2 x MAX_BARS bars whatever the spec and however many panels
it has: runs of consecutive blocks (or stages) are summed into one bar each, so an
8,192-block spec gives a picture of the usual size in the usual time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError, shorten, shorten_path
from .cost import Report
from .diagram import colour
from .latency import Latency

SUFFIXES = (".png", ".svg", ".pdf")
MAX_BARS = 80
PICTURE_BARS = 2 * MAX_BARS  # over all of a picture's panels
MIXED_COLOUR = "#bbbbbb"  # a bar that sums blocks of several types

# No creation date or software tag in the file: the same input gives the same
# picture bytes (for a given matplotlib version).
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None},
    "pdf": {"CreationDate": None},
}


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError(
            "pictures need matplotlib: pip install 'mbcompile[plot]' "
            "(or pip install matplotlib)"
        ) from None
    return Figure


def picture_format(path: str | Path) -> str:
    """`png`, `svg` or `pdf`, from the file name's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise SpecError(
            f"{shorten_path(path)}: picture must end in {', '.join(SUFFIXES)}"
        )
    return suffix[1:]


def _render(fig, fmt: str) -> bytes:
    from matplotlib import rc_context

    buffer = io.BytesIO()
    with rc_context({"svg.hashsalt": "mbcompile"}):  # SVG ids: fixed, not random
        fig.savefig(buffer, format=fmt, metadata=_METADATA[fmt], dpi=150)
    return buffer.getvalue()


def _millions(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e5:
        return f"{value / 1e3:.0f}K"
    return f"{value / 1e3:.1f}K" if value >= 1e3 else f"{value:.0f}"


def _runs(count: int, limit: int) -> list[range]:
    """`count` items as at most `limit` runs of consecutive items, in order."""
    size = max(1, -(-count // limit))  # ceiling division
    return [range(i, min(i + size, count)) for i in range(0, count, size)]


@dataclass(frozen=True)
class _Bar:
    label: str
    colour: str
    macs: int
    params: int
    ms: float  # estimated latency


def _block_bars(rep: Report, lat: Latency, limit: int) -> list[_Bar]:
    """One bar per block, or per run of blocks when there are more than `limit`."""
    bars = []
    for run in _runs(len(rep.blocks), limit):
        blocks = rep.blocks[run.start : run.stop]
        times = lat.blocks[run.start : run.stop]
        first, last = blocks[0], blocks[-1]
        types = {b.type for b in blocks}
        if len(blocks) == 1:
            label = f"{first.name}  {first.type}  {'×'.join(map(str, first.shape))}"
        else:
            kind = first.type if len(types) == 1 else "mixed"
            label = f"{first.name}–{last.name}  {kind} ×{len(blocks)}"
        bars.append(
            _Bar(
                label,
                colour(first.type) if len(types) == 1 else MIXED_COLOUR,
                sum(b.macs for b in blocks),
                sum(b.params for b in blocks),
                sum(t.time_s for t in times) * 1e3,
            )
        )
    return bars


def _ms(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def block_chart(rep: Report, lat: Latency, fmt: str) -> bytes:
    """Three panels side by side, one horizontal bar per block (network order, top
    to bottom): MACs, estimated latency on the device and trainable parameters,
    coloured by block type (runs of blocks summed beyond PICTURE_BARS / 3 rows)."""
    figure = _figure_class()
    bars = _block_bars(rep, lat, PICTURE_BARS // 3)
    n = len(bars)
    fig = figure(figsize=(15, 1.4 + 0.3 * n), layout="constrained")
    ax_macs, ax_ms, ax_params = fig.subplots(1, 3, sharey=True)
    ys = range(n)
    for ax, field, total, title, text in (
        (ax_macs, "macs", rep.macs, f"MACs (total {_millions(rep.macs)})", _millions),
        (
            ax_ms,
            "ms",
            lat.total_ms,
            f"est. latency on {lat.device.name} (total {_ms(lat.total_ms)} ms)",
            _ms,
        ),
        (
            ax_params,
            "params",
            rep.trainable_params,
            f"trainable parameters (total {_millions(rep.trainable_params)})",
            _millions,
        ),
    ):
        values = [getattr(bar, field) for bar in bars]
        colours = [bar.colour for bar in bars]
        ax.barh(ys, values, color=colours, edgecolor="#444444", linewidth=0.6)
        for y, v in zip(ys, values, strict=True):
            share = 100 * v / total if total else 0
            ax.annotate(
                f" {text(v)} ({share:.0f}%)",
                (v, y),
                va="center",
                fontsize=8,
                annotation_clip=False,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(values) * 1.3)
        ax.xaxis.set_major_formatter(lambda x, _pos, text=text: text(x) if x else "0")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    labels = [bar.label for bar in bars]
    ax_macs.set_yticks(list(ys), labels, fontsize=8, fontfamily="monospace")
    ax_macs.invert_yaxis()
    fig.suptitle(
        f"{rep.name} @ {rep.resolution}×{rep.resolution}: cost per block", fontsize=11
    )
    return _render(fig, fmt)


def compare_chart(cols, fmt: str) -> bytes:
    """Two panels, MACs and estimated latency per stage, one bar per compare column,
    grouped by stage (runs of stages summed when the columns would need more than
    PICTURE_BARS / 2 bars per panel)."""
    from .compare import stage_labels

    figure = _figure_class()
    labels = stage_labels(cols)
    k = len(cols)
    groups = _runs(len(labels), max(1, PICTURE_BARS // 2 // k))
    names = [
        labels[g.start] if len(g) == 1 else f"{labels[g.start]}–{labels[g[-1]]}"
        for g in groups
    ]
    fig = figure(figsize=(15, 1.4 + 0.22 * k * len(groups)), layout="constrained")
    ax_macs, ax_ms = fig.subplots(1, 2, sharey=True)
    height = 0.8 / k
    palette = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")
    device = cols[0].latency.device.name
    for ax, title, text in (
        (ax_macs, "MACs per stage", _millions),
        (ax_ms, f"est. latency per stage on {device} (ms)", _ms),
    ):
        for i, col in enumerate(cols):
            if ax is ax_macs:
                stages = {s.label: s.macs for s in col.report.stages()}
                total = f"{_millions(col.report.macs)} MACs"
            else:
                stages = {k: v * 1e3 for k, v in col.latency.stages().items()}
                total = f"{_ms(col.latency.total_ms)} ms"
            ys = [j + i * height for j in range(len(groups))]
            values = [sum(stages.get(labels[x], 0) for x in g) for g in groups]
            ax.barh(
                ys,
                values,
                height=height,
                color=palette[i % len(palette)],
                label=f"{shorten(col.label, 80)} ({total})",
            )
        ax.xaxis.set_major_formatter(lambda x, _pos, text=text: text(x) if x else "0")
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=8, loc="lower right")
    ax_macs.set_yticks([j + 0.4 - height / 2 for j in range(len(groups))], names)
    ax_macs.invert_yaxis()
    return _render(fig, fmt)


def sweep_chart(result, fmt: str) -> bytes:
    """Every point of a sweep, estimated latency against MACs (or parameters): the
    points over budget pale, the Pareto set joined and labelled with its values."""
    figure = _figure_class()
    fig = figure(figsize=(10, 6.5), layout="constrained")
    ax = fig.subplots()
    field = result.objective
    valid = result.evaluated
    for within, fill, label in (
        (False, "#cccccc", "over budget"),
        (True, "#56b4e9", "within budget"),
    ):
        chosen = [p for p in valid if p.within_budget == within]
        ax.scatter(
            [p.est_ms for p in chosen],
            [getattr(p, field) for p in chosen],
            s=18,
            color=fill,
            label=f"{label} ({len(chosen)})",
        )
    front = result.front
    if front:
        ax.plot(
            [p.est_ms for p in front],
            [getattr(p, field) for p in front],
            "o-",
            color="#d55e00",
            markersize=5,
            label=f"Pareto set ({len(front)})",
        )
        step = max(1, len(front) // 12)  # at most about a dozen labels
        for p in front[::step]:
            text = ", ".join(o.split("=", 1)[1] for o in p.overrides)
            ax.annotate(
                shorten(text, 40),
                (p.est_ms, getattr(p, field)),
                fontsize=7,
                xytext=(4, -10),
                textcoords="offset points",
            )
    limit = result.budgets.get("latency_ms")
    if limit:
        ax.axvline(limit, color="#444444", linestyle="--", linewidth=0.8)
    ax.yaxis.set_major_formatter(lambda y, _pos: _millions(y) if y else "0")
    ax.set_xlabel(f"estimated latency on {result.device}, batch {result.batch} (ms)")
    ax.set_ylabel("MACs" if field == "macs" else "trainable parameters")
    keys = " × ".join(a.key for a in result.axes)
    ax.set_title(f"{shorten_path(result.spec, 60)}: {keys}", fontsize=11)
    ax.grid(color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="lower right")
    return _render(fig, fmt)
