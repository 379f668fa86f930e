"""Spec loading and validation: every rule, `file:line: field.path: message` errors
with the right lines, did-you-mean suggestions, several errors at once, `--set`."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CANONICAL, SPECS
from mbcompile.errors import SpecError
from mbcompile.frontend.load import MAX_BLOCKS, load

V2 = (SPECS / "v2.yaml").read_text()
V3 = (SPECS / "v3_small.yaml").read_text()
ROW2 = "  - {t: 6, c: 32,  n: 3, s: 2}"  # stages[2] of v2.yaml
BNECK0 = "  - {k: 3, exp: 16,  c: 16, se: true,  act: relu,      s: 2}"  # v3_small


def line_of(text: str, fragment: str) -> int:
    """1-based line of the only line containing `fragment` (found independently of
    the loader, by plain text search)."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def errors(path, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(path, overrides)
    return str(info.value).splitlines()


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_specs_load(name):
    spec = load(SPECS / f"{name}.yaml").spec
    assert spec.name.startswith("mobilenet_")
    assert spec.stages


def test_error_format_names_file_line_and_field(tmp_path):
    text = replaced(V2, ROW2, ROW2.replace("s: 2", "s: 3"))
    path = write(tmp_path, text)
    line = line_of(text, "c: 32,  n")
    assert errors(path) == [f"{path}:{line}: stages[2].s: stride must be 1 or 2"]


# (old text, new text, line fragment, field, message fragment); v2.yaml unless V3.
VALUE_RULES = [
    (ROW2, ROW2.replace("s: 2", "s: 0"), "c: 32,  n", "stages[2].s", "stride must be"),
    (ROW2, ROW2.replace("c: 32", "c: 0"), "c: 0,", "stages[2].c", "channels must be"),
    (ROW2, ROW2.replace("c: 32", "c: -8"), "c: -8,", "stages[2].c", "channels must"),
    (ROW2, ROW2.replace("c: 32", "c: 16385"), "16385", "stages[2].c", "channels must"),
    (ROW2, ROW2.replace("n: 3", "n: 0"), "c: 32,  n", "stages[2].n", "repeats must be"),
    (
        ROW2,
        ROW2.replace("n: 3", "n: 65"),
        "c: 32,  n",
        "stages[2].n",
        "repeats must be",
    ),
    (ROW2, ROW2.replace("}", ", k: 4}"), "c: 32,  n", "stages[2].k", "kernel must be"),
    (ROW2, ROW2.replace("}", ", k: 13}"), "c: 32,  n", "stages[2].k", "kernel must be"),
    (ROW2, ROW2.replace("t: 6", "t: 0"), "c: 32,  n", "stages[2].t", "greater than 0"),
    (ROW2, ROW2.replace("t: 6", "t: .inf"), "c: 32,  n", "stages[2].t", "finite"),
    (ROW2, ROW2.replace("c: 32", 'c: "32"'), '"32"', "stages[2].c", "valid integer"),
    (ROW2, ROW2.replace("c: 32", "c: 32.5"), "32.5", "stages[2].c", "valid integer"),
    (ROW2, ROW2.replace("c: 32", "c: true"), "true", "stages[2].c", "valid integer"),
    (ROW2, ROW2.replace("}", ", act: mish}"), "mish", "stages[2].act", "activation"),
    ("width_multiplier: 1.0", "width_multiplier: 0", "width_multiplier:", None, ""),
    ("width_multiplier: 1.0", "width_multiplier: -1.0", "width_multiplier:", None, ""),
    ("width_multiplier: 1.0", "width_multiplier: 9.0", "width_multiplier:", None, ""),
    ("num_classes: 1000", "num_classes: -1", "num_classes", None, ""),
    ("resolution: 224", "resolution: 0", "resolution", None, ""),
    ("name: mobilenet_v2", "name: 2fast", "name:", None, "Python identifier"),
    ("name: mobilenet_v2", "name: a-b", "name:", None, "Python identifier"),
    ("family: v2", "family: v9", "family", None, "'lcnet' or 'fbnet'"),
    ("bn_momentum: 0.1 ", "bn_momentum: 1.0 ", "bn_momentum", "conventions.", "less"),
    ("bn_epsilon: 1.0e-5", "bn_epsilon: -1.0e-5", "bn_epsilon", "conventions.", "0"),
    ("dropout: 0.2", "dropout: 1.0", "dropout", "head.", "less than 1"),
    (
        "profile: torchvision",
        "profile: detectron",
        "profile",
        "conventions.",
        "'torchv",
    ),
]


@pytest.mark.parametrize("old,new,fragment,field,message", VALUE_RULES)
def test_value_rules(tmp_path, old, new, fragment, field, message):
    text = replaced(V2, old, new)
    path = write(tmp_path, text)
    key = new.split(":")[0].strip()
    field = field or key
    if field.endswith("."):
        field += key
    (only,) = errors(path)
    prefix = f"{path}:{line_of(text, fragment)}: {field}: "
    assert only.startswith(prefix), only
    assert message in only


def test_stem_and_bneck_rules(tmp_path):
    text = replaced(V3, BNECK0, BNECK0.replace("exp: 16", "exp: 0"))
    text = replaced(text, "stem: {c: 16, k: 3, s: 2", "stem: {c: 16, k: 2, s: 2")
    text = replaced(text, "se: false, act: relu,      s: 2", "se: 1, act: relu, s: 2")
    path = write(tmp_path, text)
    assert errors(path) == [
        f"{path}:{line_of(text, 'stem:')}: stem.k: kernel must be an odd size "
        "from 1 to 11",
        f"{path}:{line_of(text, 'exp: 0')}: stages[0].exp: channels must be between "
        "1 and 16384",
        f"{path}:{line_of(text, 'se: 1')}: stages[1].se: Input should be a valid "
        "boolean",
    ]


def test_resolution_too_small_for_total_stride(tmp_path):
    text = replaced(V2, "resolution: 224", "resolution: 16")
    path = write(tmp_path, text)
    # v2: stem stride 2 and four stride-2 rows, 2**5 = 32.
    assert errors(path) == [
        f"{path}:{line_of(text, 'resolution')}: resolution: 16 is too small for this "
        "network (total stride 32; needs at least 32)"
    ]
    assert load(path, ["resolution=32"]).spec.resolution == 32
    # Fewer stride-2 rows, smaller minimum: 2**4.
    assert load(path, ["stages.5.s=1"]).spec.resolution == 16


def test_too_many_blocks(tmp_path):
    row_count = MAX_BLOCKS // 64 + 1  # rows of n: 64, one row more than allowed
    rows = "".join("  - {t: 1, c: 16, n: 64, s: 1}\n" for _ in range(row_count))
    text = V2[: V2.index("stages:")] + "stages:\n" + rows + V2[V2.index("head:") :]
    path = write(tmp_path, text)
    (only,) = errors(path)
    total = row_count * 64
    assert total > MAX_BLOCKS
    assert only == (
        f"{path}:{line_of(text, 'stages:')}: stages: {total} blocks in all "
        f"(sum of n); at most {MAX_BLOCKS}"
    )


def test_unknown_key_suggests_the_closest(tmp_path):
    text = replaced(V2, "width_multiplier: 1.0", "widht_multiplier: 1.0")
    text = replaced(text, "bn_epsilon: 1.0e-5", "bn_epsilo: 1.0e-5")
    text = replaced(text, "pool: avg", "pool: avg\n  colour: blue")
    path = write(tmp_path, text)
    assert errors(path) == [
        f"{path}:{line_of(text, 'widht')}: widht_multiplier: unknown key "
        "'widht_multiplier' — did you mean 'width_multiplier'?",
        f"{path}:{line_of(text, 'bn_epsilo:')}: conventions.bn_epsilo: unknown key "
        "'bn_epsilo' — did you mean 'bn_epsilon'?",
        f"{path}:{line_of(text, 'colour')}: head.colour: unknown key 'colour'",
    ]


def test_unknown_key_in_a_row(tmp_path):
    text = replaced(V2, ROW2, ROW2.replace("n: 3", "nn: 3"))
    path = write(tmp_path, text)
    assert errors(path) == [
        f"{path}:{line_of(text, 'nn: 3')}: stages[2].nn: unknown key 'nn' — did you "
        "mean 'n'?"
    ]


def test_missing_required_keys(tmp_path):
    text = replaced(V2, "num_classes: 1000\n", "")
    text = replaced(text, ROW2, ROW2.replace("c: 32, ", ""))
    path = write(tmp_path, text)
    # A missing key is reported at the mapping that lacks it.
    assert errors(path) == [
        f"{path}:{line_of(text, 'name: mobilenet_v2')}: num_classes: missing "
        "required key 'num_classes'",
        f"{path}:{line_of(text, '{t: 6,  n: 3')}: stages[2].c: missing required key "
        "'c'",
    ]


def test_unknown_block_type_and_row_without_one(tmp_path):
    text = replaced(V2, ROW2, ROW2.replace("{", "{block: fancy, "))
    text = replaced(text, "block: inverted_residual\n", "")
    path = write(tmp_path, text)
    lines = errors(path)
    assert lines[2] == (
        f"{path}:{line_of(text, 'fancy')}: stages[2].block: unknown block type; "
        "expected one of " + lines[2].split("expected one of ")[1]
    )
    assert "inverted_residual" in lines[2]
    assert len(lines) == 7  # the six other rows name no block type
    assert all("add 'block:'" in line for line in lines[:2] + lines[3:])


def test_several_errors_reported_at_once_in_file_order(tmp_path):
    text = replaced(V2, "resolution: 224", "resolution: -1")
    text = replaced(text, ROW2, ROW2.replace("s: 2", "s: 5"))
    text = replaced(text, "dropout: 0.2", "dropout: 2.0")
    path = write(tmp_path, text)
    lines = errors(path)
    assert [line.split(": ")[1] for line in lines] == [
        "resolution",
        "stages[2].s",
        "head.dropout",
    ]
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers)


def test_exponent_floats_are_numbers(tmp_path):
    text = replaced(V2, "bn_epsilon: 1.0e-5", "bn_epsilon: 1e-5")
    spec = load(write(tmp_path, text)).spec
    assert spec.conventions.bn_epsilon == pytest.approx(1e-5)


# ----------------------------------------------------------------------- --set


def test_set_dotted_paths():
    spec = load(
        SPECS / "v2.yaml",
        [
            "stages.3.c=48",
            "width_multiplier=0.75",
            "head.conv.c=1024",
            "conventions.bn_epsilon=1e-3",
        ],
    ).spec
    assert spec.stages[3].c == 48
    assert spec.width_multiplier == 0.75
    assert spec.head.conv.c == 1024
    assert spec.conventions.bn_epsilon == pytest.approx(1e-3)
    assert load(SPECS / "v2.yaml").spec.stages[3].c == 64  # the file is unchanged


def test_set_conventions_profile_and_then_a_field(tmp_path):
    spec = load(SPECS / "v2.yaml", ["conventions=keras_applications"]).spec
    assert spec.conventions.profile == "keras_applications"
    assert spec.conventions.bn_epsilon is None  # the profile decides
    # a spec giving `conventions: <profile>` can still have one field overridden
    text = replaced(
        V2,
        V2[V2.index("conventions:") : V2.index("stem:")],
        "conventions: torchvision\n",
    )
    path = write(tmp_path, text)
    spec = load(path, ["conventions.bn_epsilon=1.0e-3"]).spec
    assert spec.conventions.profile == "torchvision"
    assert spec.conventions.bn_epsilon == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("nosuch.x=1", "--set nosuch.x=1: no such field 'nosuch' to set"),
        ("stages.99.c=1", "--set stages.99.c=1: no such field 'stages.99' to set"),
        ("stages.x.c=1", "--set stages.x.c=1: no such field 'stages.x' to set"),
        ("stages.7=1", "--set stages.7=1: no row 7 in 'stages'"),
        ("stages.0.c.x=1", "--set stages.0.c.x=1: 'stages.0.c' is not a mapping"),
        ("width_multiplier", "--set width_multiplier: expected KEY=VALUE"),
        ("=1", "--set =1: expected KEY=VALUE"),
        (
            "stages.3.c=abc",
            "--set stages.3.c=abc: stages[3].c: Input should be a valid integer",
        ),
        (
            "widht_multiplier=1",
            "--set widht_multiplier=1: widht_multiplier: unknown key "
            "'widht_multiplier' — did you mean 'width_multiplier'?",
        ),
        (
            "resolution=16",
            "--set resolution=16: resolution: 16 is too small for this network "
            "(total stride 32; needs at least 32)",
        ),
        ("stages.²=1", "--set stages.²=1: no row ² in 'stages'"),
        ("stages.3.c=[1, 2]", "--set stages.3.c=[1, 2]: stages[3].c: Input should"),
    ],
)
def test_set_errors_name_the_override(override, expected):
    (only,) = errors(SPECS / "v2.yaml", [override])
    assert only.startswith(expected), only


def test_set_values_are_validated_like_the_file():
    assert errors(SPECS / "v2.yaml", ["stages.2.s=3"]) == [
        "--set stages.2.s=3: stages[2].s: stride must be 1 or 2"
    ]


# ----------------------------------------------------------------------- hashing


REFORMATTED_V2 = """\
# the same network as specs/v2.yaml, written differently
family: v2
name: mobilenet_v2
num_classes: 1000
resolution: 224
stem:
  act: relu6
  s: 2
  k: 3
  c: 32
conventions: {bn_momentum: 0.1, bn_epsilon: 1e-5, stride2_padding: symmetric,
  profile: torchvision}
channel_divisor: 8
head: {dropout: 0.2, pool: avg, conv: {act: relu6, c: 1280}}
stages:
  - {block: inverted_residual, c: 16, t: 1}
  - {block: inverted_residual, t: 6.0, c: 24, n: 2, s: 2}
  - {block: inverted_residual, t: 6, c: 32, n: 3, s: 2, k: 3, act: relu6}
  - {block: inverted_residual, t: 6, c: 64, n: 4, s: 2}
  - {block: inverted_residual, t: 6, c: 96, n: 3, s: 1}
  - {block: inverted_residual, t: 6, c: 160, n: 3, s: 2}
  - {block: inverted_residual, t: 6, c: 320, n: 1, s: 1}
"""


def test_hash_ignores_formatting_and_changes_with_values(tmp_path):
    original = load(SPECS / "v2.yaml").content_hash
    assert load(write(tmp_path, REFORMATTED_V2)).content_hash == original
    changed = replaced(REFORMATTED_V2, "c: 160", "c: 168")
    assert load(write(tmp_path, changed, "changed.yaml")).content_hash != original
    assert load(SPECS / "v2.yaml", ["num_classes=10"]).content_hash != original
