"""Pictures of costs with matplotlib, an optional extra (`pip install 'mbcompile[plot]'`).

matplotlib is imported only when a picture is drawn, so the compiler and the text
reports never pay for it; without it, drawing is a bad-input error (exit 2) that
says how to install it. Figures are built with `matplotlib.figure.Figure` directly
(no pyplot, no global state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SpecError
from .cost import Report
from .diagram import colour

SUFFIXES = (".png", ".svg", ".pdf")


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError(
            "pictures need matplotlib: pip install 'mbcompile[plot]' "
            "(or pip install matplotlib)"
        ) from None
    return Figure


def check_suffix(path: str | Path) -> None:
    if Path(path).suffix.lower() not in SUFFIXES:
        raise SpecError(f"{path}: picture must end in {', '.join(SUFFIXES)}")


def _save(fig, path: str | Path) -> None:
    # No creation date or software tag in the file: the same input gives the same
    # picture bytes (for a given matplotlib version).
    suffix = Path(path).suffix.lower()
    metadata = {"png": {"Software": None}, "svg": {"Date": None}}.get(suffix[1:], {})
    fig.savefig(path, metadata=metadata, dpi=150)


def _millions(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e5:
        return f"{value / 1e3:.0f}K"
    return f"{value / 1e3:.1f}K" if value >= 1e3 else f"{value:.0f}"


def block_chart(rep: Report, path: str | Path) -> None:
    """Two panels side by side, one horizontal bar per block (network order, top to
    bottom): MACs and trainable parameters, coloured by block type."""
    check_suffix(path)
    figure = _figure_class()
    n = len(rep.blocks)
    fig = figure(figsize=(11, 1.4 + 0.3 * n), layout="constrained")
    ax_macs, ax_params = fig.subplots(1, 2, sharey=True)
    labels = [f"{b.name}  {b.type}  {'×'.join(map(str, b.shape))}" for b in rep.blocks]
    colours = [colour(b.type) for b in rep.blocks]
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
        values = [getattr(b, field) for b in rep.blocks]
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
    ax_macs.set_yticks(list(ys), labels, fontsize=8, fontfamily="monospace")
    ax_macs.invert_yaxis()
    fig.suptitle(
        f"{rep.name} @ {rep.resolution}×{rep.resolution}: cost per block", fontsize=11
    )
    _save(fig, path)


def compare_chart(cols, path: str | Path) -> None:
    """MACs per stage, one bar per compare column, grouped by stage."""
    from .compare import stage_labels

    check_suffix(path)
    figure = _figure_class()
    labels = stage_labels(cols)
    k = len(cols)
    fig = figure(figsize=(11, 1.4 + 0.22 * k * len(labels)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / k
    palette = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")
    for i, col in enumerate(cols):
        stages = {s.label: s.macs for s in col.report.stages()}
        ys = [j + i * height for j in range(len(labels))]
        values = [stages.get(label, 0) for label in labels]
        ax.barh(
            ys,
            values,
            height=height,
            color=palette[i % len(palette)],
            label=f"{col.label} ({_millions(col.report.macs)} MACs)",
        )
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(lambda x, _pos: _millions(x) if x else "0")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title("MACs per stage", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
