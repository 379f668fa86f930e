"""Pictures: matplotlib bar charts (lazy, optional) and block-graph diagrams."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.dom.minidom

from helpers import ROOT, SPECS
from mbcompile import compiler
from mbcompile.analysis.diagram import dot, mermaid
from mbcompile.cli import main

V2 = str(SPECS / "v2.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def v2_graph_and_report():
    _, graph = compiler.load_and_expand(V2)
    return graph, compiler.cost_report(graph)


def test_plot_writes_png_and_svg(tmp_path):
    png, svg = tmp_path / "v2.png", tmp_path / "v2.svg"
    assert main(["plot", V2, "-o", str(png)]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert main(["plot", V2, "--set", "width_multiplier=0.5", "-o", str(svg)]) == 0
    text = svg.read_text()
    xml.dom.minidom.parseString(text)  # well-formed
    assert "features.17" in text  # block labels are drawn as text


def test_compare_plot(tmp_path, capsys):
    target = tmp_path / "widths.png"
    argv = ["compare", V2, "--variant", "width_multiplier=0.5", "--plot", str(target)]
    assert main(argv) == 0
    assert target.read_bytes().startswith(PNG_MAGIC)


def test_picture_with_unknown_suffix_is_exit_2(tmp_path, capsys):
    assert main(["plot", V2, "-o", str(tmp_path / "v2.txt")]) == 2
    assert ".png" in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_exit_2(tmp_path):
    # A None entry in sys.modules makes `import matplotlib` fail as if uninstalled.
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from mbcompile.cli import main\n"
        f"raise SystemExit(main(['plot', {V2!r}, '-o', {str(tmp_path / 'x.png')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "pip install 'mbcompile[plot]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_mermaid_has_one_box_per_block_chained_in_order():
    graph, rep = v2_graph_and_report()
    text = mermaid(graph, rep)
    assert text.startswith("flowchart TD\n")
    boxes = re.findall(r'^\s+(b\d+)\["', text, flags=re.M)
    assert boxes == [f"b{i}" for i in range(len(graph.blocks))]
    edges = re.findall(r"^\s+(\w+) --> (\w+)$", text, flags=re.M)
    assert edges == list(zip(["input", *boxes], boxes, strict=False))
    # Stage rows with several blocks are grouped: V2 rows 1-5 repeat (n = 2, 3, 4, 3, 3).
    assert text.count("subgraph ") == 5 == text.count("\n  end\n")
    assert "features.3 · inverted_residual (residual)" in text


def test_dot_has_one_node_per_block_and_is_balanced():
    graph, rep = v2_graph_and_report()
    text = dot(graph, rep)
    assert text.startswith('digraph "mobilenet_v2" {')
    assert text.count("{") == text.count("}")
    assert len(re.findall(r"^\s+b\d+ \[label=", text, flags=re.M)) == len(graph.blocks)
    assert len(re.findall(r" -> ", text)) == len(graph.blocks)


def test_diagram_formats_follow_the_output_suffix(tmp_path):
    for name, first in (("v2.mmd", "flowchart TD"), ("v2.dot", "digraph")):
        assert main(["diagram", V2, "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_text().startswith(first)


def fake_dot(directory):
    """A stand-in `dot` that records its arguments and input and emits an SVG."""
    script = directory / "dot"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > "{directory}/args"\n'
        f'cat > "{directory}/input"\n'
        "echo '<svg xmlns=\"http://www.w3.org/2000/svg\"/>'\n"
    )
    script.chmod(0o755)


def test_svg_diagram_is_rendered_by_graphviz_dot(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_dot(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    target = tmp_path / "v2.svg"
    assert main(["diagram", V2, "-o", str(target)]) == 0
    assert (bin_dir / "args").read_text().split() == ["-Tsvg"]
    graph, rep = v2_graph_and_report()
    assert (bin_dir / "input").read_text() == dot(graph, rep)
    assert target.read_text().startswith("<svg")


def test_svg_diagram_without_graphviz_is_a_clear_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    assert main(["diagram", V2, "--format", "svg", "-o", str(tmp_path / "v.svg")]) == 2
    err = capsys.readouterr().err
    assert "Graphviz" in err and "--format dot" in err
    assert not (tmp_path / "v.svg").exists()


def test_committed_docs_picture_exists_and_is_linked():
    assert (ROOT / "docs" / "v2_costs.png").read_bytes().startswith(PNG_MAGIC)
    assert "(v2_costs.png)" in (ROOT / "docs" / "costs.md").read_text()
