"""The Python API (`mbcompile.generate_source`, `build_model`, `load_module`,
`cost_report`): the same source, models and messages as the CLI, without files.

"The same" is held against the committed generated/ files (which the golden tests
hold against the CLI) and against the CLI run in the test."""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

import mbcompile
from helpers import (
    ROOT,
    SPECS,
    expects_pixels,
    keras_weighted_layers,
    random_images,
    randomize_keras,
    randomize_torch,
    run_cli,
    run_keras,
)
from mbcompile import api, compiler
from mbcompile.project.config import read as read_project


def committed_source(spec: Path, backend: str) -> str:
    """The committed generated/ file of a spec in specs/, specs/timm/, examples/."""
    folder = {"specs": "", "timm": "timm", "examples": "examples"}[spec.parent.name]
    return (ROOT / "generated" / backend / folder / f"{spec.stem}.py").read_text()


# The specs whose generated source this repository commits (pyproject.toml's
# [tool.mbcompile] targets; specs/timm/ holds more), and the specs mbcompile ships.
COMMITTED = sorted(job.spec for job in read_project(ROOT / "pyproject.toml").jobs)
BUNDLED = sorted(SPECS.glob("*.yaml")) + sorted(SPECS.glob("timm/*.yaml"))


@pytest.mark.parametrize("spec", COMMITTED, ids=lambda p: p.stem)
def test_source_is_the_committed_file(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    for backend in ("keras", "torch"):
        relative = spec.relative_to(ROOT)
        assert api.generate_source(relative, backend) == committed_source(spec, backend)


def test_bundled_specs_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no spec files here: names reach the bundled ones
    names = mbcompile.bundled_specs()
    expected = {p.stem for p in BUNDLED}
    assert set(names) == expected
    for name in ("v2", "mobilenetv4_hybrid_medium"):
        path = names[name]
        assert api.generate_source(name, "torch") == committed_source(path, "torch")
    with pytest.raises(mbcompile.SpecError, match="no bundled spec of that name"):
        api.generate_source("v9", "torch")


def test_text_data_and_path_give_the_same_network(monkeypatch):
    monkeypatch.chdir(ROOT)
    path = SPECS / "v3_small.yaml"
    text = path.read_text()
    from_file = api.generate_source(path, "torch").splitlines()
    from_text = api.generate_source(text, "torch").splitlines()
    from_data = api.generate_source(yaml.safe_load(text), "torch").splitlines()
    # Only the header's spec file name differs.
    assert from_file[0].endswith("from v3_small.yaml — do not edit.")
    assert from_text[0].endswith("from <spec> — do not edit.")
    assert from_data[0].endswith("from <dict> — do not edit.")
    assert from_file[1:] == from_text[1:] == from_data[1:]
    # extends in text or data is relative to the working folder
    child = {"extends": "specs/v3_large.yaml", "all_rows": {"se": False}}
    assert (
        api.generate_source(child, "keras").splitlines()[1:]
        == api.generate_source(
            "extends: specs/v3_large.yaml\nall_rows: {se: false}\n", "keras"
        ).splitlines()[1:]
    )


def test_overrides_and_fold_bn_match_the_cli():
    spec = SPECS / "v3_large.yaml"
    sets = ["width_multiplier=0.75", "stages.3.c=48", "resolution=192"]
    code, expected, err = run_cli(
        [
            spec,
            "--backend",
            "torch",
            "-o",
            "-",
            *(a for s in sets for a in ("--set", s)),
        ]
    )
    assert code == 0, err
    mapping = {"width_multiplier": 0.75, "stages[3].c": 48, "resolution": 192}
    assert api.generate_source(spec, "torch", overrides=mapping) == expected
    assert api.generate_source(spec, "torch", overrides=sets) == expected
    code, folded, err = run_cli([spec, "--backend", "keras", "--fold-bn", "-o", "-"])
    assert code == 0, err
    assert api.generate_source(spec, "keras", fold_bn=True) == folded


def test_cost_report_is_what_the_cli_prints():
    spec = SPECS / "v3_small.yaml"
    code, out, _ = run_cli(
        ["costs", spec, "--format", "json", "--set", "width_multiplier=0.5"]
    )
    assert code == 0
    rep = mbcompile.cost_report(spec, overrides={"width_multiplier": 0.5})
    assert isinstance(rep, mbcompile.Report)
    lat = mbcompile.estimate_latency(spec, overrides={"width_multiplier": 0.5})
    assert isinstance(lat, mbcompile.Latency)
    printed = {**rep.to_json(), "latency": lat.to_json()}
    assert json.loads(out) == json.loads(json.dumps(printed))
    # V3-Small at width 1.0: torchvision's parameter count (tests/test_reference.py)
    assert mbcompile.cost_report(spec).trainable_params == 2_542_856


BAD = [
    ("s: 3", {"stages.2.s": 3}),  # a bad value, via overrides
    ("unknown key", {"stemm": 3}),
    ("resolution", {"resolution": 8}),
]


@pytest.mark.parametrize(("what", "overrides"), BAD, ids=[b[0] for b in BAD])
def test_errors_carry_the_cli_messages(what, overrides):
    spec = SPECS / "v2.yaml"
    with pytest.raises(mbcompile.SpecError) as caught:
        api.generate_source(
            spec, "torch", overrides=[f"{k}={v}" for k, v in overrides.items()]
        )
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    code, _, err = run_cli([spec, "--backend", "torch", "-o", "-", *sets])
    assert code == 2
    assert [
        f"mbcompile: error: {line}" for line in str(caught.value).splitlines()
    ] == err.splitlines()


def test_errors_in_a_file_name_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SPECS / "v2.yaml").read_text().replace("n: 2, s: 2}", "n: 2, s: 5}", 1)
    )
    with pytest.raises(mbcompile.SpecError) as caught:
        mbcompile.build_model(bad, "torch")
    error = caught.value
    assert (error.source, error.line, error.field) == (str(bad), 24, "stages[1].s")
    assert error.message == "stride must be 1 or 2"
    code, _, err = run_cli([bad, "--backend", "torch", "-o", "-"])
    assert (code, err) == (2, f"mbcompile: error: {error}\n")


def test_data_errors_name_fields_and_reject_objects():
    data = yaml.safe_load((SPECS / "v2.yaml").read_text())
    data["stages"][1]["s"] = 5
    with pytest.raises(mbcompile.SpecError) as caught:
        api.generate_source(data, "torch")
    assert str(caught.value) == "<dict>: stages[1].s: stride must be 1 or 2"
    data["stages"][1]["s"] = np.int64(2)
    with pytest.raises(mbcompile.SpecError) as caught:
        api.generate_source(data, "torch")
    assert str(caught.value) == (
        "<dict>: stages[1].s: a int64 is not spec data (str, int, float, bool, None, "
        "lists and mappings are)"
    )
    # Python's int-to-text limit (4,300 digits) must not turn into a crash.
    with pytest.raises(mbcompile.SpecError, match="more than 100 digits"):
        api.generate_source(SPECS / "v2.yaml", "torch", overrides={"c": 10**5000})
    with pytest.raises(mbcompile.SpecError, match="more than 100 digits"):
        api.generate_source({"resolution": -(10**5000)}, "torch")
    for bad in (3, b"specs/v2.yaml", ["v2"]):
        with pytest.raises(mbcompile.SpecError, match="a spec is a path"):
            api.generate_source(bad, "torch")
    with pytest.raises(mbcompile.SpecError, match="unknown backend 'tf'"):
        api.generate_source(SPECS / "v2.yaml", "tf")
    with pytest.raises(mbcompile.SpecError, match="not a single value"):
        api.generate_source(SPECS / "v2.yaml", "torch", overrides={"stages": []})


# -------------------------------------------------------------------- live models


def import_committed(backend: str, name: str):
    path = ROOT / "generated" / backend / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"committed_{backend}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_live_torch_model_is_the_committed_one():
    import torch

    committed = import_committed("torch", "v3_small").build_model().eval()
    live = mbcompile.build_model(SPECS / "v3_small.yaml", "torch").eval()
    assert type(live).__module__.startswith("mbcompile_live_torch_")
    images = random_images(compiler.load_and_expand(SPECS / "v3_small.yaml")[1])
    randomize_torch(committed, images)
    state = committed.state_dict()
    assert list(live.state_dict()) == list(state)
    live.load_state_dict(state, strict=True)
    x = torch.from_numpy(images)
    with torch.no_grad():
        assert torch.equal(live(x), committed(x))
    # TorchScript reads the live module's source; pickling finds its classes.
    scripted = torch.jit.script(live)
    with torch.no_grad():
        assert torch.equal(scripted(x), committed(x))
    buffer = io.BytesIO()
    torch.save(live, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(again(x), committed(x))


def test_live_model_takes_build_model_arguments():
    import torch

    model = mbcompile.build_model("v1", "torch", num_classes=10, dropout=0.0).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 10)
    module = mbcompile.load_module("v1", "torch")
    assert module.__doc__.startswith("mobilenet_v1: 3x224x224 input")
    assert inspect.getsource(module.build_model).startswith("def build_model(")


def test_live_keras_model_is_the_committed_one():
    committed = import_committed("keras", "v3_small").build_model()
    live = mbcompile.build_model(SPECS / "v3_small.yaml", "keras")
    names = [layer.name for layer in keras_weighted_layers(committed)]
    assert [layer.name for layer in keras_weighted_layers(live)] == names
    graph = compiler.load_and_expand(SPECS / "v3_small.yaml")[1]
    images = random_images(graph, pixels=expects_pixels(graph))
    randomize_keras(committed, images.transpose(0, 2, 3, 1))
    live.set_weights(committed.get_weights())
    assert np.array_equal(run_keras(live, images), run_keras(committed, images))


# ------------------------------------------------------------------------- typing


def test_the_api_is_typed():
    package = ROOT / "mbcompile"
    assert (package / "py.typed").is_file()
    for name in api.__all__:
        obj = getattr(api, name)
        if not inspect.isfunction(obj):
            continue
        signature = inspect.signature(obj)
        missing = [
            p.name
            for p in signature.parameters.values()
            if p.annotation is inspect.Parameter.empty
        ]
        assert not missing, (name, missing)
        assert signature.return_annotation is not inspect.Signature.empty, name
    overloads = typing.get_overloads(api.build_model)
    returns = sorted(inspect.signature(o).return_annotation for o in overloads)
    assert returns == ["keras.Model", "torch.nn.Module"]
    assert set(api.__all__) - {"Backend", "SpecLike"} <= set(mbcompile.__all__)


def test_importing_the_package_is_cheap():
    code = (
        "import sys, mbcompile\n"
        "heavy = {'pydantic', 'networkx', 'jinja2', 'yaml', 'torch', 'keras'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "mbcompile.generate_source\n"
        "print('mbcompile.api' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.stdout.splitlines() == ["[]", "True"], result.stderr
