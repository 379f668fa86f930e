"""Block-graph diagrams as text: Graphviz `dot` and Mermaid (renders on GitHub and
GitLab). `mbcompile diagram SPEC` writes either; an SVG needs Graphviz's `dot` on
PATH, which is looked up only when an SVG is asked for.

One box per block (as in the generated model body), grouped by the stage-table row
that produced it, labelled with its output shape and MACs, with an arrow from each
block whose output it reads; residual blocks and squeeze-excite are marked.

`dot` is an external program: it runs with a time limit, and whatever goes wrong
with it (missing, failing, crashing, hanging) is reported on one line, exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

from ..errors import SpecError, shorten
from ..ir.blocks import BLOCK_TYPES
from ..ir.graph import Graph
from .cost import Report

FORMATS = ("mermaid", "dot", "svg")
SUFFIXES = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
}

OTHER_COLOUR = "#ffffff"
DOT_TIMEOUT = 60  # seconds: a hung or runaway `dot` must not hang the command


def colour(block_type: str) -> str:
    """A block type's fill colour, as its module registers it."""
    registered = BLOCK_TYPES.get(block_type)
    return registered.colour if registered else OTHER_COLOUR


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
        if getattr(params, "residual", False):
            tags.append("residual")
        if getattr(params, "se", None) is not None:
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


def _edges(graph: Graph) -> list[tuple[str, str]]:
    """(from, to) box ids: each block is fed by the block before it (or the input)
    and by any other whose output its ops read (the fusion neck's stages)."""
    edges = []
    for block in graph.blocks:
        owners = [
            graph.node(source)["block"]
            for node in block.nodes
            for source in graph.inputs(node)
        ]
        for owner in dict.fromkeys(o for o in owners if o != block.index):
            edges.append(("input" if owner is None else f"b{owner}", f"b{block.index}"))
    return edges


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
    lines += [f"  {a} --> {b}" for a, b in _edges(graph)]
    for kind in dict.fromkeys(b.type for b in rep.blocks):
        members = [f"b{b.index}" for b in rep.blocks if b.type == kind]
        lines.append(f"  classDef {kind} fill:{colour(kind)},stroke:#555")
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
        text = "\\n".join(label)  # dot's escaped newline
        lines.append(f'  {box_id} [label="{text}", fillcolor="{colour(btype)}"];')
    if open_group:
        lines.append("  }")
    lines += [f"  {a} -> {b};" for a, b in _edges(graph)]
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
    try:
        # A session of its own: on a timeout the whole group goes, children too.
        process = subprocess.Popen(
            [exe, "-Tsvg"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise SpecError(f"cannot run Graphviz `dot` ({exc.strerror or exc})") from None
    try:
        out, err = process.communicate(dot_text.encode("utf-8"), timeout=DOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise SpecError(
            f"Graphviz `dot` did not finish within {DOT_TIMEOUT} seconds; "
            "`--format dot` writes the text without it"
        ) from None
    except BaseException:
        _kill_group(process)
        raise
    if process.returncode != 0:
        said = err.decode("utf-8", "replace").strip().splitlines()
        detail = f": {shorten(said[0], 160)}" if said else ""
        how = (
            f"was killed by signal {-process.returncode}"
            if process.returncode < 0
            else f"failed (exit code {process.returncode})"
        )
        raise SpecError(f"Graphviz `dot` {how}{detail}")
    text = out.decode("utf-8", "replace")
    if "<svg" not in text:
        raise SpecError("Graphviz `dot` wrote no SVG")
    return text


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
