"""Property-based fuzzing of the compiler.

- Random *valid* specs compile in both backends; the IR's parameter counts equal
  both frameworks' and the backends compute the same logits.
- Random *invalid* mutations of the canonical specs always end with exit code 2 and
  located one-line errors; random *garbage* (any value anywhere, raw text edits,
  random --set keys and values, random paths for the spec, its base and the
  output, random weights files) ends with 0 or 2, never an internal error or an
  exception, with short message lines, and never replaces a special file.

A bounded number of examples runs by default (well under a minute); a long campaign
runs with `MBCOMPILE_FUZZ=long pytest -m fuzz tests/test_fuzz.py`.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (
    CANONICAL,
    SPECS,
    TOLERANCE,
    difference,
    expects_pixels,
    import_source,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    run_cli,
    run_keras,
    run_torch,
)
from mbcompile import compiler

pytestmark = pytest.mark.fuzz

LONG = os.environ.get("MBCOMPILE_FUZZ") == "long"


def examples(default: int, long: int):
    # The default run is the same on every machine (a CI run must not fail by
    # chance); the long campaign explores new examples each time.
    return settings(
        max_examples=long if LONG else default,
        derandomize=not LONG,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def write_spec(directory: Path, data) -> Path:
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


# ----------------------------------------------------------------------- valid specs

ACTS = ["relu", "relu6", "hardswish", "hardsigmoid", "swish", "sigmoid", "identity"]
FAMILY = {"depthwise_separable": "v1", "inverted_residual": "v2", "bneck": "v3"}


@st.composite
def valid_specs(draw) -> dict:
    block = draw(st.sampled_from(sorted(FAMILY)))
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        row = {
            "c": draw(st.sampled_from([8, 16, 24])),
            "s": draw(st.sampled_from([1, 2])),
            "k": draw(st.sampled_from([3, 5, 7])),
            "act": draw(st.sampled_from(ACTS)),
        }
        if block == "bneck":
            row["exp"] = draw(st.sampled_from([8, 16, 32, 48]))
            row["se"] = draw(st.booleans())
        else:
            row["n"] = draw(st.integers(1, 2))
        if block == "inverted_residual":
            row["t"] = draw(st.sampled_from([1, 2, 3, 6]))
        rows.append(row)
    stem_stride = draw(st.sampled_from([1, 2]))
    total_stride = stem_stride * math.prod(r["s"] for r in rows)
    head: dict = {"dropout": draw(st.sampled_from([0.0, 0.2]))}
    conv = draw(st.sampled_from(["none", "c", "t"]))
    if conv == "c":
        head["conv"] = {"c": draw(st.sampled_from([32, 48])), "act": "hardswish"}
    elif conv == "t":
        head["conv"] = {"t": draw(st.sampled_from([2, 6])), "act": "relu6"}
    if draw(st.booleans()):
        head["hidden"] = {"c": draw(st.sampled_from([16, 40])), "act": "relu"}
    return {
        "name": "fuzzed",
        "family": FAMILY[block],
        "resolution": draw(st.integers(max(32, total_stride), 96)),
        "num_classes": draw(st.integers(1, 10)),
        "width_multiplier": draw(st.sampled_from([0.5, 0.75, 1.0])),
        "conventions": draw(st.sampled_from(["torchvision", "keras_applications"])),
        "stem": {
            "c": draw(st.sampled_from([8, 16])),
            "k": draw(st.sampled_from([3, 5])),
            "s": stem_stride,
            "act": draw(st.sampled_from(ACTS)),
        },
        "block": block,
        "stages": rows,
        "head": head,
    }


def test_torch_bneck_without_expand_conv(tmp_path):
    """Found by the fuzzer: a first block without expand conv (keras' except_first
    rule) whose table asks for another expanded size must run its depthwise conv on
    the input in every backend."""
    import torch  # noqa: F401

    data = {
        "name": "fuzzed",
        "family": "v3",
        "resolution": 32,
        "num_classes": 1,
        "width_multiplier": 0.5,
        "conventions": "keras_applications",
        "stem": {"c": 16, "k": 3, "s": 1, "act": "relu"},
        "block": "bneck",
        "stages": [{"c": 8, "s": 1, "k": 3, "act": "relu", "exp": 8, "se": False}],
        "head": {"dropout": 0.0},
    }
    _, graph = compiler.load_and_expand(write_spec(tmp_path, data))
    block = graph.blocks[1]
    assert not block.params.expand
    assert block.params.exp_c == block.params.in_c
    model = import_source(compiler.generate(graph, "torch"), tmp_path).build_model()
    trainable = compiler.cost_report(graph).trainable_params
    assert sum(p.numel() for p in model.parameters()) == trainable


@examples(default=12, long=400)
@given(data=valid_specs())
def test_random_valid_specs_compile_count_and_agree(data):
    import keras
    import torch

    keras.backend.clear_session()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = write_spec(tmp, data)
        _, graph = compiler.load_and_expand(path)
        costs = compiler.cost_report(graph)
        models = {
            backend: import_source(
                compiler.generate(graph, backend), tmp, backend
            ).build_model()
            for backend in ("torch", "keras")
        }
    torch_model, keras_model = models["torch"], models["keras"]
    assert sum(p.numel() for p in torch_model.parameters()) == costs.trainable_params
    assert keras_model.count_params() == (
        costs.trainable_params + costs.non_trainable_params
    )
    rescaled = expects_pixels(graph)
    randomize_torch(torch_model, random_images(graph, seed=3, pixels=rescaled))
    port_torch_to_keras(graph, torch_model, keras_model)
    images = random_images(graph, seed=4, pixels=rescaled)
    with torch.no_grad():
        torch_logits = run_torch(torch_model, images)
    keras_logits = run_keras(keras_model, images)
    assert torch_logits.shape == keras_logits.shape == (2, data["num_classes"])
    assert np.isfinite(torch_logits).all()
    assert difference(torch_logits, keras_logits) <= TOLERANCE


# ----------------------------------------------------------------------- invalid specs

CANONICAL_DATA = {
    name: yaml.safe_load((SPECS / f"{name}.yaml").read_text()) for name in CANONICAL
}
ROW_REQUIRED = {
    "depthwise_separable": ["c"],
    "inverted_residual": ["t", "c"],
    "bneck": ["k", "exp", "c", "se", "act", "s"],
}
TOP_REQUIRED = ["name", "family", "resolution", "num_classes", "conventions"]
TOP_REQUIRED += ["stem", "stages", "head"]
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True)
)
NOT_INT = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not f.is_integer()
    ),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
GARBAGE = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _row_block(data: dict, i: int) -> str:
    return data["stages"][i].get("block", data.get("block"))


@st.composite
def invalid_mutations(draw) -> tuple[str, dict]:
    """A canonical spec with one change that is invalid by construction."""
    name = draw(st.sampled_from(CANONICAL))
    data = copy.deepcopy(CANONICAL_DATA[name])
    i = draw(st.integers(0, len(data["stages"]) - 1))
    row = data["stages"][i]
    kind = draw(
        st.sampled_from(
            [
                "drop_top",
                "drop_row",
                "unknown_key",
                "stride",
                "channels",
                "repeats",
                "kernel",
                "width",
                "resolution",
                "classes",
                "ratio",
                "not_finite",
                "int_type",
                "bad_string",
                "structure",
            ]
        )
    )
    if kind == "drop_top":
        del data[draw(st.sampled_from(TOP_REQUIRED))]
    elif kind == "drop_row":
        row.pop(draw(st.sampled_from(ROW_REQUIRED[_row_block(data, i)])), None)
        if _row_block(data, i) == "inverted_residual":
            row.pop("t", None)
            row.pop("exp", None)
    elif kind == "unknown_key":
        parent = draw(
            st.sampled_from(
                [data, row, data["stem"], data["head"], data["conventions"]]
            )
        )
        if isinstance(parent, dict):
            parent["zz_" + draw(st.text(max_size=10))] = draw(GARBAGE)
    elif kind == "stride":
        bad = draw(st.integers(-100, 100).filter(lambda s: s not in (1, 2)))
        target = draw(st.sampled_from([row, data["stem"]]))
        target["s"] = bad
    elif kind == "channels":
        bad = draw(st.integers(max_value=0) | st.integers(min_value=16_385))
        draw(st.sampled_from([row, data["stem"]]))["c"] = bad
    elif kind == "repeats":
        row["n"] = draw(st.integers(max_value=0) | st.integers(65, 10**9))
    elif kind == "kernel":
        bad = draw(
            st.integers(-50, 50).filter(lambda k: k % 2 == 0 or not 1 <= k <= 11)
        )
        draw(st.sampled_from([row, data["stem"]]))["k"] = bad
    elif kind == "width":
        data["width_multiplier"] = draw(
            st.floats(max_value=0) | st.floats(min_value=8, exclude_min=True)
        )
    elif kind == "resolution":
        data["resolution"] = draw(st.integers(max_value=31) | st.integers(4097))
    elif kind == "classes":
        data["num_classes"] = draw(st.integers(max_value=-1) | st.integers(100_001))
    elif kind == "ratio":
        bad = draw(st.floats(max_value=0, exclude_max=True) | st.floats(min_value=1))
        data["head"]["dropout"] = bad
    elif kind == "not_finite":
        bad = draw(st.sampled_from([math.inf, -math.inf, math.nan]))
        key = draw(st.sampled_from(["width_multiplier", "resolution", "num_classes"]))
        data[key] = bad
    elif kind == "int_type":
        key = draw(st.sampled_from(["c", "s"]))
        row[key] = draw(NOT_INT)
    elif kind == "bad_string":
        text = draw(st.text(min_size=1, max_size=30))
        field = draw(st.sampled_from(["name", "family", "act", "profile", "block"]))
        if field == "name":
            data["name"] = text if not text.isidentifier() else text + "-"
        elif field == "family":
            data["family"] = text + "?"
        elif field == "act":
            row["act"] = "no_such_" + text
        elif field == "profile":
            data["conventions"] = "no_such_" + text
        else:
            row["block"] = "no_such_" + text
    else:  # structure
        target = draw(st.sampled_from(["stages", "row", "stem", "head", "top", "conv"]))
        replacement = draw(st.sampled_from([[], {}, 7, "text", None, [[1]]]))
        if target == "stages":
            data["stages"] = replacement if replacement != [[1]] else [1]
        elif target == "row":
            data["stages"][i] = draw(st.sampled_from([7, "row", [1, 2], None]))
        elif target in ("stem", "head"):
            data[target] = draw(st.sampled_from([[], 7, "text", [data[target]]]))
        elif target == "conv":
            data["conventions"] = draw(st.sampled_from([1.5, [], True]))
        else:
            return kind, [data]  # type: ignore[return-value]
    return kind, data


def assert_clean_bad_input(code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert err and all(
        line.startswith("mbcompile: error: ") and len(line) < 600
        for line in err.splitlines()
    ), err
    assert "Traceback" not in err and "internal error" not in err


@examples(default=200, long=10_000)
@given(mutation=invalid_mutations())
def test_invalid_mutations_exit_2(mutation):
    _kind, data = mutation  # the kind shows in hypothesis' falsifying example
    with tempfile.TemporaryDirectory() as tmp:
        path = write_spec(Path(tmp), data)
        out_file = Path(tmp) / "out.py"
        code, out, err = run_cli([path, "--backend", "torch", "-o", out_file])
        assert_clean_bad_input(code, out, err)
        assert not out_file.exists()


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@st.composite
def garbage_specs(draw) -> str:
    """Any value anywhere, or a raw text edit: valid or not, never a crash."""
    name = draw(st.sampled_from(CANONICAL))
    if draw(st.booleans()):
        text = (SPECS / f"{name}.yaml").read_text()
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 20))
        return text[:at] + draw(st.text(max_size=20)) + text[at + cut :]
    data = copy.deepcopy(CANONICAL_DATA[name])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(data))[1:]))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = draw(GARBAGE)
    return yaml.safe_dump(data, allow_unicode=True)


@examples(default=200, long=10_000)
@given(text=garbage_specs())
def test_garbage_never_crashes(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text)
        code, out, err = run_cli([path, "--backend", "keras", "-o", Path(tmp) / "o.py"])
        assert code in (0, 2), err
        if code == 2:
            assert_clean_bad_input(code, out, err)


SET_KEYS = st.one_of(
    st.sampled_from(
        [
            "name",
            "resolution",
            "width_multiplier",
            "stages.0.c",
            "stages[1].s",
            "stages.2",
            "stages[2][0]",
            "head.conv.c",
            "conventions",
            "conventions.bn_epsilon",
            "stem.k",
            "all_rows.k",
            "all_rows",
            "extends",
            "include_top",
        ]
    ),
    st.from_regex(
        r"[a-z_]{1,8}(\[[0-9]{1,3}\]|\.[0-9]{1,3})?(\.[a-z]{1,4})?", fullmatch=True
    ),
    st.text(max_size=15),
)
# Values YAML reads as something else than they look (YAML 1.1's octal, base 60,
# yes/no/on/off), and numbers past Python's int-conversion limit.
NUMBERISH = st.one_of(
    st.from_regex(r"[-+]?[0-9_:.xXoObBeE]{1,12}", fullmatch=True),
    st.sampled_from(["yes", "No", "ON", "off", "y", "n", "~", ".NaN", "-.inf", "0o17"]),
    st.integers(4_000, 6_000).map(lambda n: "9" * n),
)


@examples(default=150, long=5_000)
@given(
    name=st.sampled_from(CANONICAL),
    key=SET_KEYS,
    value=st.text(max_size=25) | NUMBERS.map(str) | NUMBERISH,
)
def test_random_set_never_crashes(name, key, value):
    code, out, err = run_cli(
        [SPECS / f"{name}.yaml", "--report", f"--set={key}={value}"]
    )
    assert code in (0, 2), err
    if code == 2:
        assert_clean_bad_input(code, out, err)


# ----------------------------------------------------------------------- paths

SEGMENT = st.text(
    st.characters(blacklist_characters="/", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=300,
).filter(lambda s: s not in (".", ".."))
SPECIAL_PATHS = ["<fifo>", "<directory>", "<spec>", "<device>", "<loop>", "<file>/x"]


@st.composite
def fuzzed_paths(draw) -> str:
    """A relative path (joined under a scratch folder), or a special one."""
    if draw(st.booleans()):
        return draw(st.sampled_from(SPECIAL_PATHS))
    parts = draw(st.lists(SEGMENT, min_size=1, max_size=4))
    if draw(st.booleans()):
        parts[-1] += draw(st.sampled_from([".py", ".yaml", ".png", ".svg", ".mmd"]))
    return "/".join(parts)


def _scratch(tmp: Path) -> dict[str, Path]:
    """Special files a fuzzed path may name, which must survive every command."""
    os.mkfifo(tmp / "fifo")
    (tmp / "dir").mkdir()
    (tmp / "file").write_text("x")
    (tmp / "loop").symlink_to(tmp / "loop")
    device = tmp / "device"
    if os.geteuid() == 0:  # else /dev/null, which nobody else can replace
        os.mknod(device, 0o20666, os.makedev(1, 3))
    spec = tmp / "spec.yaml"
    spec.write_text((SPECS / "v1.yaml").read_text())
    return {
        "<fifo>": tmp / "fifo",
        "<directory>": tmp / "dir",
        "<spec>": spec,
        "<device>": device if device.exists() else Path("/dev/null"),
        "<loop>": tmp / "loop",
        "<file>/x": tmp / "file" / "x",
    }


def _resolve(path: str, tmp: Path, special: dict[str, Path]) -> str:
    return str(special.get(path, tmp / "out" / path))


def _identities(special: dict[str, Path]) -> dict[str, tuple[int, int]]:
    return {
        name: (os.lstat(path).st_ino, os.lstat(path).st_mode)
        for name, path in special.items()
        if os.path.lexists(path)
    }


@pytest.mark.usefixtures("no_hang")
@examples(default=60, long=2_000)
@given(
    where=st.sampled_from(["spec", "extends", "output", "diagram"]),
    path=fuzzed_paths(),
)
def test_random_paths_never_crash_nor_destroy(where, path):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        special = _scratch(tmp)
        spec = special["<spec>"]
        before = {
            k: (os.lstat(p).st_ino, os.lstat(p).st_mode)
            for k, p in special.items()
            if os.path.lexists(p)
        }
        spec_text = spec.read_text()
        target = _resolve(path, tmp, special)
        if where == "spec":
            argv = [target, "--report"]
        elif where == "extends":
            child = tmp / "child.yaml"
            quoted = target.replace("\\", "\\\\").replace('"', '\\"')
            child.write_text(f'extends: "{quoted}"\nnum_classes: 10\n')
            argv = [child, "--report"]
        elif where == "output":
            argv = [spec, "--backend", "torch", "-o", target]
        else:
            argv = ["diagram", spec, "-o", target]
        code, out, err = run_cli(argv)
        assert code in (0, 2), err
        if code == 2:
            assert_clean_bad_input(code, out, err)
        after = {
            k: (os.lstat(p).st_ino, os.lstat(p).st_mode)
            for k, p in special.items()
            if os.path.lexists(p)
        }
        assert after == before
        assert spec.read_text() == spec_text
        assert not list(tmp.rglob(".mbc-*"))


# ----------------------------------------------------------------------- weights

WEIGHTS_SMALL = ["width_multiplier=0.25", "resolution=32", "num_classes=10"]


@pytest.fixture(scope="module")
def small_state(tmp_path_factory):
    """A state_dict of v1 with WEIGHTS_SMALL, and its .weights.h5 file."""
    import torch

    from helpers import build

    tmp = tmp_path_factory.mktemp("weights")
    _, _, model = build(SPECS / "v1.yaml", "torch", tmp, WEIGHTS_SMALL)
    pt = tmp / "small.pt"
    torch.save(model.state_dict(), pt)
    h5 = tmp / "small.weights.h5"
    code, _, err = run_weights(pt, h5)
    assert code == 0, err
    return model.state_dict(), h5


def run_weights(source, target) -> tuple[int, str, str]:
    argv = ["weights", SPECS / "v1.yaml", "--from", source, "--to", target]
    for override in WEIGHTS_SMALL:
        argv += ["--set", override]
    return run_cli(argv)


DTYPES = ["float32", "float16", "bfloat16", "float64", "int64", "bool", "complex64"]


@st.composite
def state_dict_edits(draw) -> list[tuple]:
    """A few edits of a valid state_dict: (what, index, argument)."""
    kinds = ["dtype", "shape", "value", "drop", "add", "key", "not_tensor", "layout"]
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.integers(0, 200),
                st.sampled_from(DTYPES)
                | st.lists(st.integers(0, 5), max_size=4)
                | st.floats(allow_nan=True, allow_infinity=True, width=32)
                | st.none(),
            ),
            min_size=1,
            max_size=3,
        )
    )


def _edit_state(state: dict, edits) -> dict:
    import torch

    items = list(state.items())
    for kind, index, argument in edits:
        if not items:
            break
        i = index % len(items)
        key, value = items[i]
        if kind in ("dtype", "value", "layout") and not isinstance(value, torch.Tensor):
            continue  # an earlier edit made it something else
        if kind == "dtype" and isinstance(argument, str):
            value = value.to(getattr(torch, argument))
        elif kind == "shape" and isinstance(argument, list):
            value = torch.zeros(argument)
        elif kind == "value" and isinstance(argument, float) and value.numel():
            value = value.clone().float()
            value.view(-1)[0] = argument
        elif kind == "drop":
            items.pop(i)
            continue
        elif kind == "add":
            items.insert(i, (f"extra.{index}", torch.zeros(3)))
            continue
        elif kind == "key":
            key = index
        elif kind == "not_tensor":
            value = argument
        elif kind == "layout" and value.dim() >= 1 and value.is_floating_point():
            value = value.to_sparse()
        items[i] = (key, value)
    return dict(items)


@examples(default=15, long=400)
@given(edits=state_dict_edits())
def test_random_state_dicts_never_crash(small_state, edits):
    import torch

    state, _ = small_state
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "edited.pt"
        torch.save(_edit_state(state, edits), source)
        target = Path(tmp) / "out.weights.h5"
        code, out, err = run_weights(source, target)
        assert code in (0, 2), err
        if code == 2:
            assert_clean_bad_input(code, out, err)
            assert not target.exists()


@st.composite
def h5_edits(draw) -> list[tuple]:
    kinds = ["delete", "group", "dtype", "shape", "soft", "external", "nan", "attr"]
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.integers(0, 500),
                st.sampled_from(["f2", "f8", "i4", "c8", "S4", "u1"])
                | st.lists(st.integers(0, 70_000), max_size=3),
            ),
            min_size=1,
            max_size=3,
        )
    )


def _edit_h5(path: Path, edits) -> None:
    import h5py

    with h5py.File(path, "r+") as file:
        for kind, index, argument in edits:
            names: list[str] = []
            file.visit(names.append)
            if not names:
                return
            name = names[index % len(names)]
            if kind == "attr":
                file.attrs["layer_names"] = [b"\xff", b"x"] if index % 2 else [index]
                continue
            shape = getattr(file.get(name), "shape", (3,))
            del file[name]
            if kind == "group":
                file.create_group(name)
            elif kind == "dtype" and isinstance(argument, str):
                file.create_dataset(name, shape=shape, dtype=argument)
            elif kind == "shape" and isinstance(argument, list):
                file.create_dataset(
                    name,
                    shape=tuple(argument),
                    dtype="f4",
                    chunks=True if argument and all(argument) else None,
                )
            elif kind == "soft":
                file[name] = h5py.SoftLink(f"/{names[(index + 1) % len(names)]}")
            elif kind == "external":
                file[name] = h5py.ExternalLink("/dev/zero", "/x")
            elif kind == "nan":
                file.create_dataset(name, data=np.full(shape or (), np.nan, "f4"))


@examples(default=8, long=200)
@given(edits=h5_edits())
def test_random_keras_files_never_crash(small_state, edits):
    import shutil

    _, good = small_state
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "edited.weights.h5"
        shutil.copy(good, source)
        _edit_h5(source, edits)
        target = Path(tmp) / "out.pt"
        code, out, err = run_weights(source, target)
        assert code in (0, 2), err
        if code == 2:
            assert_clean_bad_input(code, out, err)
            assert not target.exists()


@st.composite
def safetensors_edits(draw) -> list[tuple]:
    """A few edits of a valid .safetensors file: of a tensor's header entry, of the
    header's declared length, of a byte, or a cut."""
    kinds = ["dtype", "shape", "offsets", "drop", "length", "byte", "cut", "junk"]
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.integers(0, 10**6),
                st.sampled_from(["F32", "F16", "BF16", "I64", "F128", "", 7])
                | st.lists(st.integers(-2, 2**40), max_size=4)
                | st.integers(-(2**63), 2**64 - 1),
            ),
            min_size=1,
            max_size=3,
        )
    )


def _edit_safetensors(data: bytes, edits) -> bytes:
    import json
    import struct

    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    declared = None
    for kind, index, argument in edits:
        names = sorted(k for k in header if k != "__metadata__")
        name = names[index % len(names)] if names else None
        if kind in ("dtype", "shape", "offsets") and name is not None:
            field = {"dtype": "dtype", "shape": "shape", "offsets": "data_offsets"}
            header[name][field[kind]] = argument
        elif kind == "drop" and name is not None:
            del header[name]
        elif kind == "length" and isinstance(argument, int):
            declared = argument % 2**64
        elif kind == "byte" and body:
            i = index % len(body)
            body = body[:i] + bytes([(body[i] + 1) % 256]) + body[i + 1 :]
        elif kind == "cut":
            body = body[: index % (len(body) + 1)]
        elif kind == "junk" and name is not None:
            header[name] = argument
    text = json.dumps(header).encode()
    size = len(text) if declared is None else declared
    return struct.pack("<Q", size) + text + body


@examples(default=15, long=400)
@given(edits=safetensors_edits())
def test_random_safetensors_files_never_crash(small_state, edits):
    from safetensors.torch import save

    state, _ = small_state
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "edited.safetensors"
        source.write_bytes(_edit_safetensors(save(dict(state)), edits))
        target = Path(tmp) / "out.weights.h5"
        code, out, err = run_weights(source, target)
        assert code in (0, 2), err
        if code == 2:
            assert_clean_bad_input(code, out, err)
            assert not target.exists()
