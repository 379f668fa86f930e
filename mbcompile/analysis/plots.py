"""Pictures of costs with matplotlib, an optional extra (`pip install 'mbcompile[plot]'`).

matplotlib is imported only when a picture is drawn, so the compiler and the text
reports never pay for it; without it, drawing is a bad-input error (exit 2) that
says how to install it. Figures are built with `matplotlib.figure.Figure` directly
(no pyplot, no global state, no display needed) and returned as bytes, which the
caller writes through the one output path (`mbcompile.files`).

A picture holds at most MAX_BARS bars whatever the spec: runs of consecutive blocks
(or stages) are summed into one bar each, so an 8,192-block spec gives a picture of
the usual size in the usual time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError, shorten, shorten_path
from .cost import Report
from .diagram import colour

SUFFIXES = (".png", ".svg", ".pdf")
MAX_BARS = 80
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


def _block_bars(rep: Report) -> list[_Bar]:
    """One bar per block, or per run of blocks when there are more than MAX_BARS."""
    bars = []
    for run in _runs(len(rep.blocks), MAX_BARS):
        blocks = rep.blocks[run.start : run.stop]
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
            )
        )
    return bars


def block_chart(rep: Report, fmt: str) -> bytes:
    """Two panels side by side, one horizontal bar per block (network order, top to
    bottom): MACs and trainable parameters, coloured by block type."""
    figure = _figure_class()
    bars = _block_bars(rep)
    n = len(bars)
    fig = figure(figsize=(11, 1.4 + 0.3 * n), layout="constrained")
    ax_macs, ax_params = fig.subplots(1, 2, sharey=True)
    ys = range(n)
    for ax, field, total, title in (
        (ax_macs, "macs", rep.macs, f"MACs (total {_millions(rep.macs)})"),
        (
            ax_params,
            "params",
            rep.trainable_params,
            f"trainable parameters (total {_millions(rep.trainable_params)})",
        ),
    ):
        values = [getattr(bar, field) for bar in bars]
        colours = [bar.colour for bar in bars]
        ax.barh(ys, values, color=colours, edgecolor="#444444", linewidth=0.6)
        for y, v in zip(ys, values, strict=True):
            share = 100 * v / total if total else 0
            ax.annotate(
                f" {_millions(v)} ({share:.0f}%)",
                (v, y),
                va="center",
                fontsize=8,
                annotation_clip=False,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(values) * 1.3)
        ax.xaxis.set_major_formatter(lambda x, _pos: _millions(x) if x else "0")
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
    """MACs per stage, one bar per compare column, grouped by stage (runs of stages
    summed when the columns would need more than MAX_BARS bars)."""
    from .compare import stage_labels

    figure = _figure_class()
    labels = stage_labels(cols)
    k = len(cols)
    groups = _runs(len(labels), max(1, MAX_BARS // k))
    names = [
        labels[g.start] if len(g) == 1 else f"{labels[g.start]}–{labels[g[-1]]}"
        for g in groups
    ]
    fig = figure(figsize=(11, 1.4 + 0.22 * k * len(groups)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / k
    palette = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")
    for i, col in enumerate(cols):
        stages = {s.label: s.macs for s in col.report.stages()}
        ys = [j + i * height for j in range(len(groups))]
        values = [sum(stages.get(labels[x], 0) for x in g) for g in groups]
        ax.barh(
            ys,
            values,
            height=height,
            color=palette[i % len(palette)],
            label=f"{shorten(col.label, 80)} ({_millions(col.report.macs)} MACs)",
        )
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(groups))], names)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(lambda x, _pos: _millions(x) if x else "0")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title("MACs per stage", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    return _render(fig, fmt)
