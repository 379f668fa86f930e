"""Block-graph diagrams as text: Graphviz `dot` and Mermaid (renders on GitHub and
GitLab). `mbcompile diagram SPEC` writes either; an SVG needs Graphviz's `dot` on
PATH, which is looked up only when an SVG is asked for.

One box per block (as in the generated model body), grouped by the stage-table row
that produced it, labelled with its output shape and MACs; residual blocks and
squeeze-excite are marked.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

from .cli import add_overrides_argument
from .cost import Report
from .errors import SpecError
from .ir import Graph

FORMATS = ("mermaid", "dot", "svg")
SUFFIXES = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
}

# One fill colour per block type (colour-blind-safe Okabe-Ito palette, lightened).
COLOURS = {
    "conv_bn_act": "#d9d9d9",
    "depthwise_separable": "#a6d4f2",
    "inverted_residual": "#f7d08a",
    "bneck": "#b5e3c9",
    "classifier": "#e8c1da",
}
OTHER_COLOUR = "#ffffff"


def _mega(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def _boxes(graph: Graph, rep: Report) -> list[tuple[str, str, list[str]]]:
    """(id, stage, label lines) per block, in order."""
    boxes = []
    for b in rep.blocks:
        params = graph.blocks[b.index].params
        tags = []
        if params.get("residual"):
            tags.append("residual")
        if params.get("se_c"):
            tags.append("SE")
        title = f"{b.name} · {b.type}" + (f" ({', '.join(tags)})" if tags else "")
        boxes.append(
            (
                f"b{b.index}",
                b.stage,
                [title, f"{_shape(b.shape)} · {_mega(b.macs)} MACs"],
            )
        )
    return boxes


def _groups(rep: Report) -> dict[str, str]:
    """Stage label -> caption, for stage rows that hold more than one block."""
    return {
        s.label: f"{s.label} · {s.type} ×{s.blocks}"
        for s in rep.stages()
        if s.blocks > 1
    }


def mermaid(graph: Graph, rep: Report) -> str:
    input_shape = _shape(graph.shape("input"))
    lines = ["flowchart TD", f'  input["input<br/>{input_shape}"]']
    groups = _groups(rep)
    open_group = None
    for box_id, stage, label in _boxes(graph, rep):
        if open_group and stage != open_group:
            lines.append("  end")
            open_group = None
        if stage in groups and stage != open_group:
            lines.append(f'  subgraph {stage.replace(".", "_")}["{groups[stage]}"]')
            open_group = stage
        lines.append(f'  {box_id}["{"<br/>".join(label)}"]')
    if open_group:
        lines.append("  end")
    ids = ["input"] + [f"b{b.index}" for b in rep.blocks]
    lines += [f"  {a} --> {b}" for a, b in itertools.pairwise(ids)]
    for kind, colour in COLOURS.items():
        members = [f"b{b.index}" for b in rep.blocks if b.type == kind]
        if members:
            lines.append(f"  classDef {kind} fill:{colour},stroke:#555")
            lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"


def dot(graph: Graph, rep: Report) -> str:
    input_shape = _shape(graph.shape("input"))
    lines = [
        f'digraph "{rep.name}" {{',
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", '
        'fontsize=10, fillcolor="#ffffff"];',
        '  edge [color="#555555"];',
        f'  input [label="input\\n{input_shape}", shape=oval];',
    ]
    groups = _groups(rep)
    open_group = None
    for box_id, stage, label in _boxes(graph, rep):
        if open_group and stage != open_group:
            lines.append("  }")
            open_group = None
        if stage in groups and stage != open_group:
            lines.append(f"  subgraph cluster_{stage.replace('.', '_')} {{")
            lines.append(f'    label="{groups[stage]}"; style=dashed; fontsize=10;')
            open_group = stage
        btype = rep.blocks[int(box_id[1:])].type
        colour = COLOURS.get(btype, OTHER_COLOUR)
        text = "\\n".join(label)  # dot's escaped newline
        lines.append(f'  {box_id} [label="{text}", fillcolor="{colour}"];')
    if open_group:
        lines.append("  }")
    ids = ["input"] + [f"b{b.index}" for b in rep.blocks]
    lines += [f"  {a} -> {b};" for a, b in itertools.pairwise(ids)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_text: str) -> str:
    """SVG from dot text with Graphviz; a clear bad-input error when it is missing."""
    exe = shutil.which("dot")
    if exe is None:
        raise SpecError(
            "SVG diagrams need Graphviz's `dot` on PATH (e.g. `apt-get install "
            "graphviz`); `--format dot` or `--format mermaid` need nothing"
        )
    done = subprocess.run(
        [exe, "-Tsvg"], input=dot_text, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.strip()}")
    return done.stdout


# ---------------------------------------------------------------- `mbcompile diagram`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="path to a spec YAML file")
    add_overrides_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="mermaid, dot, or svg (rendered with Graphviz `dot`); default from the "
        "-o suffix (.mmd, .dot/.gv, .svg), else mermaid",
    )
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write here (default: standard output)"
    )


def run(args: argparse.Namespace) -> int:
    from . import compiler

    fmt = args.format
    if fmt is None and args.output:
        fmt = SUFFIXES.get(Path(args.output).suffix.lower())
    fmt = fmt or "mermaid"
    loaded, graph = compiler.load_and_expand(args.spec, args.overrides)
    rep = compiler.cost_report(loaded, graph)
    text = mermaid(graph, rep) if fmt == "mermaid" else dot(graph, rep)
    if fmt == "svg":
        text = render_svg(text)
    target = compiler.write_output(text, args.output or "-", "", args.spec)
    if target is not None:
        print(f"mbcompile: wrote {target}", file=sys.stderr)
    return 0
