"""Spec composition: extends (deep merge, origins, cycles), all_rows, --set on top."""

from __future__ import annotations

import textwrap

import pytest

from helpers import ROOT, SPECS
from mbcompile.cli import main
from mbcompile.errors import SpecError
from mbcompile.frontend.load import load


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def line_of(path, needle: str) -> int:
    """1-based line of the first line containing `needle` (found by text search)."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


BASE = """
    name: base_net
    family: v2
    resolution: 64
    num_classes: 10
    conventions: {profile: torchvision, bn_epsilon: 1.0e-3}
    stem: {c: 16, k: 3, s: 2, act: relu6}
    block: inverted_residual
    stages:
      - {t: 1, c: 16, n: 1, s: 1}
      - {t: 6, c: 24, n: 2, s: 2}
      - {t: 6, c: 32, n: 2, s: 2}
      - {t: 6, c: 64, n: 1, s: 2}
    head:
      conv: {c: 256, act: relu6}
      dropout: 0.2
"""


def test_deep_merge_mappings_merge_lists_and_scalars_replace(tmp_path):
    write(tmp_path / "base" / "base.yaml", BASE)
    child = write(
        tmp_path / "child.yaml",
        """
        extends: base/base.yaml
        name: child_net
        conventions: {bn_momentum: 0.01}
        stem: {act: hardswish}
        head:
          conv: {act: relu}
        stages:
          - {t: 1, c: 24, n: 1, s: 2}
        """,
    )
    spec = load(child).spec
    assert spec.name == "child_net"
    assert spec.resolution == 64  # inherited scalar
    assert (spec.conventions.profile, spec.conventions.bn_epsilon) == (
        "torchvision",
        1e-3,
    )
    assert spec.conventions.bn_momentum == 0.01  # merged into the mapping
    assert (spec.stem.c, spec.stem.act) == (16, "hardswish")
    assert (spec.head.conv.c, spec.head.conv.act, spec.head.dropout) == (
        256,
        "relu",
        0.2,
    )
    assert len(spec.stages) == 1 and spec.stages[0].c == 24  # list replaced


def test_extends_chain_and_relative_paths(tmp_path):
    write(tmp_path / "a" / "base.yaml", BASE)
    write(tmp_path / "a" / "b" / "mid.yaml", "extends: ../base.yaml\nresolution: 96\n")
    top = write(tmp_path / "top.yaml", "extends: a/b/mid.yaml\nnum_classes: 5\n")
    spec = load(top).spec
    assert (spec.resolution, spec.num_classes, spec.name) == (96, 5, "base_net")


def test_cycle_is_an_error_naming_the_chain(tmp_path, capsys):
    write(tmp_path / "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\nname: b\n")
    spec = tmp_path / "a.yaml"
    with pytest.raises(SpecError) as err:
        load(spec)
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert f"extends cycle: {a} -> {b} -> {a}" in str(err.value)
    assert str(err.value).startswith(f"{b}:1: extends:")
    assert main([str(spec), "--report"]) == 2
    assert "extends cycle" in capsys.readouterr().err


def test_self_extension_is_a_cycle(tmp_path):
    write(tmp_path / "a.yaml", "extends: a.yaml\n")
    with pytest.raises(SpecError, match="extends cycle"):
        load(tmp_path / "a.yaml")


def test_missing_base_names_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "name: b\nextends: nowhere/c.yaml\n")
    with pytest.raises(SpecError) as err:
        load(tmp_path / "a.yaml")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'b.yaml'}:2: extends: base spec not found")
    assert f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> " in text
    assert text.endswith(str(tmp_path / "nowhere" / "c.yaml"))


def test_extends_must_be_a_path(tmp_path):
    write(tmp_path / "a.yaml", "extends: [x.yaml]\n")
    with pytest.raises(SpecError, match="extends: must be the path of a spec"):
        load(tmp_path / "a.yaml")


def test_errors_name_the_file_and_line_the_value_came_from(tmp_path):
    base = write(tmp_path / "base.yaml", BASE.replace("n: 2, s: 2}", "n: 2, s: 3}", 1))
    child = write(
        tmp_path / "child.yaml",
        """
        extends: base.yaml
        name: child_net
        head:
          conv: {c: 0}
        """,
    )
    with pytest.raises(SpecError) as err:
        load(child)
    lines = str(err.value).splitlines()
    assert len(lines) == 2  # both reported at once
    assert (
        f"{base}:{line_of(base, 's: 3')}: stages[1].s: stride must be 1 or 2" in lines
    )
    assert any(
        line.startswith(f"{child}:{line_of(child, 'c: 0')}: head.conv.c:")
        for line in lines
    )


def test_set_reaches_rows_of_an_extended_spec(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nname: child_net\n")
    spec = load(child, ["stages.3.c=48", "head.conv.act=relu"]).spec
    assert spec.stages[3].c == 48
    assert spec.head.conv.act == "relu"
    with pytest.raises(SpecError) as err:
        load(child, ["stages.3.s=3"])
    assert str(err.value) == "--set stages.3.s=3: stages[3].s: stride must be 1 or 2"


def test_all_rows_overrides_every_row_that_has_the_key(tmp_path):
    base = write(tmp_path / "base.yaml", BASE)
    text = base.read_text().replace(
        "  - {t: 1, c: 16, n: 1, s: 1}",
        "  - {t: 1, c: 16, n: 1, s: 1}\n  - {block: conv_bn_act, c: 16, act: relu}",
    )
    base.write_text(text + "all_rows: {k: 5, se: true}\n")
    spec = load(base).spec
    assert [row.k for row in spec.stages] == [5] * 5
    # conv_bn_act rows have no `se`: the key goes to the rows that have it only.
    assert [getattr(row, "se", None) for row in spec.stages] == [
        True,
        None,
        True,
        True,
        True,
    ]
    # --set of one row's key beats all_rows; --set all_rows.k changes all of them.
    spec = load(base, ["stages.2.k=3"]).spec
    assert [row.k for row in spec.stages] == [5, 5, 3, 5, 5]
    spec = load(base, ["all_rows.k=7"]).spec
    assert {row.k for row in spec.stages} == {7}


def test_all_rows_errors_are_located_and_suggest(tmp_path):
    spec = write(
        tmp_path / "a.yaml",
        textwrap.dedent(BASE) + "all_rows: {se_ration: 0.5, zzz: 3}\n",
    )
    with pytest.raises(SpecError) as err:
        load(spec)
    line = line_of(spec, "all_rows")
    assert str(err.value).splitlines() == [
        f"{spec}:{line}: all_rows.se_ration: unknown row key 'se_ration' — did you "
        "mean 'se_ratio'?",
        f"{spec}:{line}: all_rows.zzz: unknown row key 'zzz'",
    ]
    # A bad value from all_rows is reported where all_rows gives it.
    bad = write(tmp_path / "b.yaml", textwrap.dedent(BASE) + "all_rows:\n  k: 4\n")
    with pytest.raises(SpecError) as err:
        load(bad)
    lines = str(err.value).splitlines()
    assert len(lines) == 4  # one per row
    assert all(
        line.startswith(f"{bad}:{line_of(bad, 'k: 4')}: stages[") for line in lines
    )


def test_typo_of_a_composition_key_is_suggested(tmp_path):
    spec = write(tmp_path / "a.yaml", "extnds: base.yaml\n" + textwrap.dedent(BASE))
    with pytest.raises(SpecError, match="did you mean 'extends'"):
        load(spec)


@pytest.mark.parametrize("size", ["large", "small"])
def test_minimalistic_specs_are_their_v3_with_three_changes(size):
    full = load(SPECS / f"v3_{size}.yaml").spec
    mini = load(SPECS / f"v3_{size}_minimalistic.yaml").spec
    assert mini.name == f"mobilenet_v3_{size}_minimalistic"
    assert len(mini.stages) == len(full.stages)
    for f, m in zip(full.stages, mini.stages, strict=True):
        assert (m.k, m.se, m.act) == (3, False, "relu")
        assert (m.exp, m.c, m.s, m.n) == (f.exp, f.c, f.s, f.n)
    assert (mini.stem.act, mini.head.conv.act, mini.head.hidden.act) == ("relu",) * 3
    assert mini.head.hidden.c == full.head.hidden.c


def test_shipped_files_load():
    for path in [*SPECS.glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")]:
        load(path)
