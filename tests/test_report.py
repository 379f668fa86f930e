"""Report formats and the commands that print them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from helpers import ROOT, SPECS
from mbcompile import compiler
from mbcompile.analysis.report import markdown, render
from mbcompile.cli import main
from mbcompile.project import config, outputs

# MobileNet V2 at 224 (tests/reference/README.md): trainable, BN statistics, MACs.
V2 = (3_504_872, 34_112, 300_774_272)


def v2():
    return compiler.load_and_expand(SPECS / "v2.yaml")


def test_json_has_totals_blocks_layers_and_bytes():
    data = json.loads(render(v2()[1], "json"))
    assert (data["trainable_params"], data["non_trainable_params"], data["macs"]) == V2
    assert sum(b["macs"] for b in data["blocks"]) == data["macs"]
    assert sum(n["macs"] for n in data["layers"]) == data["macs"]
    weights = data["bytes"]
    assert weights["float32"]["weights"] == 4 * (V2[0] + V2[1])
    assert weights["int8"]["weights"] == V2[0] + V2[1]
    assert (
        weights["float16"]["peak_activations"] * 2
        == (weights["float32"]["peak_activations"])
    )


def test_csv_has_one_row_per_block_and_a_total():
    rows = list(csv.DictReader(io.StringIO(render(v2()[1], "csv"))))
    blocks, total = rows[:-1], rows[-1]
    assert len(blocks) == 20  # stem + 17 bottlenecks + head conv + classifier
    assert total["name"] == "total"
    assert int(total["macs"]) == V2[2] == sum(int(r["macs"]) for r in blocks)
    assert int(total["params"]) == V2[0]


def test_table_lists_every_block_and_the_totals():
    text = render(v2()[1], "table", explain=True)
    assert "features.17" in text and "classifier" in text
    assert f"{V2[2]:,}" in text
    assert "314,193,216" in text  # fvcore's figure for V2, from the reference README
    assert "1/N + 1/k²" in text


def test_markdown_is_deterministic_and_renders_tables_and_a_diagram():
    text = markdown(v2()[1])
    assert text == markdown(v2()[1])
    assert "| trainable parameters | 3,504,872 |" in text
    assert "```mermaid\nflowchart TD" in text
    assert text.endswith("```\n")


def test_committed_reports_are_regenerated_for_every_spec():
    project = config.read(ROOT / "pyproject.toml")
    expected = {o.path: o.text for o in outputs.expected(project, cwd=ROOT).outputs}
    for spec in sorted(SPECS.glob("*.yaml")):
        target = ROOT / "generated" / "reports" / f"{spec.stem}.md"
        assert target in expected
        assert target.read_text() == expected[target], "run mbcompile generate"


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
def test_report_flag_and_costs_command_print_the_same(fmt, capsys):
    assert main([str(SPECS / "v3_small.yaml"), "--report", "--format", fmt]) == 0
    first = capsys.readouterr().out
    assert main(["costs", str(SPECS / "v3_small.yaml"), "--format", fmt]) == 0
    assert capsys.readouterr().out == first


def test_costs_bad_override_is_exit_2(capsys):
    assert main(["costs", str(SPECS / "v2.yaml"), "--set", "nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_costs_layers_lists_every_op(capsys):
    assert main(["costs", str(SPECS / "v1.yaml"), "--layers"]) == 0
    out = capsys.readouterr().out
    _, graph = compiler.load_and_expand(SPECS / "v1.yaml")
    assert all(f"\n{node} " in out for node in graph.order)


FRAMEWORKS = ("torch", "tensorflow", "keras", "matplotlib")

NO_FRAMEWORK_SCRIPT = """
import sys
from mbcompile.cli import main
for argv in {commands!r}:
    assert main(argv) == 0, argv
loaded = sorted(m for m in {frameworks!r} if m in sys.modules)
print("LOADED", loaded, file=sys.stderr)
raise SystemExit(1 if loaded else 0)
"""


def test_reports_never_import_a_framework(tmp_path):
    v2_spec = str(SPECS / "v2.yaml")
    commands = [
        [v2_spec, "--report"],
        *([v2_spec, "--report", "--format", f] for f in ("json", "csv", "markdown")),
        ["costs", v2_spec, "--explain", "--layers"],
        ["compare", v2_spec, "--variant", "width_multiplier=0.5"],
        ["diagram", v2_spec, "--format", "dot", "-o", str(tmp_path / "v2.dot")],
    ]
    script = NO_FRAMEWORK_SCRIPT.format(commands=commands, frameworks=FRAMEWORKS)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stderr
