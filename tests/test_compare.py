"""`mbcompile compare`: columns from specs, '@' overrides and --variant."""

from __future__ import annotations

import csv
import io
import json

import pytest

from helpers import SPECS
from mbcompile import compiler
from mbcompile.cli import main
from mbcompile.cli.compare import columns, parse_column, split_overrides
from mbcompile.errors import SpecError

V2 = str(SPECS / "v2.yaml")


def test_overrides_split_at_commas_that_start_a_key():
    assert split_overrides("width_multiplier=0.5,resolution=160") == [
        "width_multiplier=0.5",
        "resolution=160",
    ]
    assert split_overrides("name=a,b") == ["name=a,b"]  # a comma inside a value
    assert parse_column(f"{V2}@stages.3.c=48") == (V2, ["stages.3.c=48"])
    assert parse_column(V2) == (V2, [])
    with pytest.raises(SpecError):
        parse_column(f"{V2}@")


def test_columns_are_specs_then_variants_with_common_sets():
    cols = columns(
        [V2, f"{V2}@resolution=192"], ["width_multiplier=0.5"], ["num_classes=10"]
    )
    assert [c.label for c in cols] == [
        "v2",
        "v2@width_multiplier=0.5",
        "v2@resolution=192",
        "v2@resolution=192,width_multiplier=0.5",
    ]
    _, graph = compiler.load_and_expand(
        V2, ["num_classes=10", "resolution=192", "width_multiplier=0.5"]
    )
    assert cols[3].report.macs == compiler.cost_report(graph).macs


def test_json_rows_hold_every_columns_totals_and_stage_sums(capsys):
    argv = ["compare", V2, "--variant", "width_multiplier=0.75", "--format", "json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == "v2"
    rows = {(r["section"], r["row"]): r["values"] for r in data["rows"]}
    assert rows[("totals", "MACs")][0] == 300_774_272  # the reference figure
    for i in range(2):
        stage_sum = sum(v[i] for (s, _), v in rows.items() if s == "MACs per stage")
        assert stage_sum == rows[("totals", "MACs")][i]
    # Width 0.75 shrinks every stage but never grows one.
    for (section, _), (base, small) in rows.items():
        if section == "MACs per stage":
            assert small <= base


def test_table_shows_deltas_against_the_first_column(capsys):
    assert main(["compare", V2, f"{V2}@resolution=112"]) == 0
    out = capsys.readouterr().out
    # At half the resolution every convolution does a quarter of the work; only
    # the classifier (a dense layer after global pooling) keeps its MACs and
    # parameters (its estimated time shrinks a little: the pooling reads a quarter).
    assert "(-50.0%)" in out  # resolution 224 -> 112
    stem = next(line for line in out.splitlines() if line.startswith("stem "))
    assert "(-75.0%)" in stem
    per_stage = {}
    for section in out.split("\n\n"):
        lines = section.splitlines()
        per_stage[lines[0].split("  ")[0]] = next(
            (line for line in lines if line.startswith("classifier ")), None
        )
    assert per_stage["MACs per stage"].endswith("(=)")
    assert per_stage["params per stage"].endswith("(=)")
    assert "(-" in per_stage["est. ms per stage (phone_cpu)"]


def test_different_families_align_stages_and_mark_missing_ones(capsys):
    argv = ["compare", V2, str(SPECS / "v3_small.yaml"), "--format", "csv"]
    assert main(argv) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    by_row = {(r[0], r[1]): r[2:] for r in rows[1:]}
    # V3-Small has 11 stage rows (0-10), V2 seven (0-6).
    assert by_row[("MACs per stage", "stages.10")][0] == ""
    assert by_row[("MACs per stage", "stages.10")][1] != ""


def test_markdown_names_the_baseline(capsys):
    assert (
        main(
            ["compare", V2, "--variant", "width_multiplier=0.5", "--format", "markdown"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("Baseline: `v2`")
    assert "| `v2` | `v2@width_multiplier=0.5` |" in out


def test_bad_variant_is_exit_2(capsys):
    assert main(["compare", V2, "--variant", "width_multiplier=-1"]) == 2
    assert "width_multiplier" in capsys.readouterr().err
