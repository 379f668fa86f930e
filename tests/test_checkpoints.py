"""Checkpoints as they come (`mbcompile weights --from`): the files timm writes and
the hub serves, training checkpoints, fine-tuning, and the layouts derived from
the IR without building a model.

- The state_dict keys the IR gives are the generated PyTorch model's own, and the
  Keras layout is the one Keras' own `save_weights` writes, for every spec the
  tests build (a representative few in the default run, the rest `slow`).
- timm's `save_for_hf` writes a model (random weights, batch-norm statistics
  measured on data) into a folder; read as the folder, as `model.safetensors`, as
  `pytorch_model.bin`, as `hf-hub:` from an offline cache and as a `train.py`-style
  checkpoint with DDP's `module.` prefixes, each converts to Keras weights with
  which the generated Keras model computes timm's logits within TOLERANCE.
- Converting to Keras weights imports neither TensorFlow nor Keras (nor torch,
  from a .safetensors file).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_timm import PROMISED

from helpers import (
    ROOT,
    SPECS,
    TOLERANCE,
    build,
    difference,
    random_images,
    randomize_torch,
    run_cli,
    run_keras,
    run_python,
    run_torch,
)
from mbcompile import compiler
from mbcompile.backends.torch import state_dict_keys
from mbcompile.frontend.bundled import bundled_specs

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# The canonical specs, the timm models generated/ keeps and the examples (the rest
# of timm's family follows their layouts; tests/test_timm*.py compare its keys).
KEPT = {p.stem for p in (ROOT / "specs").glob("*.yaml")}
ALL_SPECS = [
    *(p for n, p in bundled_specs().items() if n in KEPT or n in PROMISED),
    *EXAMPLES,
]
# In the default run: torchvision's and keras.applications' layouts (pads in
# Sequentials), timm's (attention, whose Keras layers are ordered otherwise than
# the IR; squeeze-excite; depthwise-separable blocks), a backbone with taps.
REPRESENTATIVE = {
    "v1",
    "v3_small",
    "mobilenetv4_hybrid_medium",
    "efficientnet_b0",
    "lcnet_100",
    "detection_backbone",
}
SMALL = "resolution=64"


def spec_id(path: Path) -> str:
    return path.stem


def cases(variants, representative=REPRESENTATIVE):
    """(spec, overrides) for every spec and variant, `slow` unless the spec is
    representative and the variant the first."""
    out = []
    for path in ALL_SPECS:
        for i, overrides in enumerate(variants):
            fast = path.stem in representative and i == 0
            out.append(
                pytest.param(
                    path,
                    overrides,
                    marks=() if fast else (pytest.mark.slow,),
                    id="-".join([path.stem, *overrides]),
                )
            )
    return out


def weights(spec, source, target, *overrides, key=None) -> tuple[int, str]:
    argv = ["weights", spec, "--from", source, "--to", target]
    for override in overrides:
        argv += ["--set", override]
    if key:
        argv += ["--key", key]
    code, _, err = run_cli(argv)
    return code, err


# ------------------------------------------------------------------- layouts


LAYOUT_VARIANTS = [
    (),
    ("fold_batch_norm=true",),
    ("conventions=keras_applications",),  # uneven pads: ZeroPad2d in Sequentials
    ("conventions=torchvision",),
]


@pytest.mark.parametrize("spec,overrides", cases(LAYOUT_VARIANTS))
def test_state_dict_keys_are_the_generated_models(spec, overrides):
    import torch

    import mbcompile

    overrides = [*overrides, SMALL]
    _, graph = compiler.load_and_expand(spec, overrides)
    with torch.device("meta"):  # no memory, no initialisation
        model = mbcompile.build_model(spec, "torch", overrides=overrides)
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert [k for group in state_dict_keys(graph) for k in group] == keys


# One timm model per layer unit or block option whose modules the checkpoint layout
# must name (space-to-depth, squeeze-excite in fused rows, mixed convs, CondConv,
# Global Context, the other norms, grouped convs, anti-aliasing, residual conv-bn-act
# rows, MobileNetV5's neck and RMSNorm, FBNetV3's head).
LAYOUT_UNITS = [
    "efficientnet_x_b3",
    "efficientnet_h_b5",
    "mixnet_s",
    "efficientnet_cc_b0_4e",
    "gc_efficientnetv2_rw_t",
    "test_efficientnet_gn",
    "test_efficientnet_evos",
    "mobilenet_edgetpu_v2_xs",
    "mobilenetv4_conv_aa_medium",
    "efficientnetv2_rw_t",
    "mobilenetv5_base",
    "fbnetv3_b",
]


@pytest.mark.parametrize("name", LAYOUT_UNITS)
def test_state_dict_keys_of_every_layer_unit(name):
    test_state_dict_keys_are_the_generated_models(
        ROOT / "specs" / "timm" / f"{name}.yaml", ()
    )


def _datasets(path: Path) -> dict[str, tuple]:
    """Every dataset of an HDF5 file: path -> (shape, values), and every group's
    `name` attribute."""
    import h5py

    found = {}
    with h5py.File(path, "r") as file:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()]
            elif "name" in obj.attrs:
                found[f"{name}@name"] = obj.attrs["name"]

        file.visititems(visit)
    return found


@pytest.mark.parametrize(
    "spec,overrides", cases([()], {"v3_small", "mobilenetv4_hybrid_medium"})
)
def test_keras_files_have_keras_own_layout(spec, overrides, tmp_path):
    """Keras' own save_weights file, read without Keras and written again, is the
    same file's content: every dataset at the same path with the same values,
    every layer's name; with the names stripped (as older Keras 3 versions
    wrote them), the layers are found by class and count. Keras loads ours."""
    import h5py

    _, _, model = build(spec, "keras", tmp_path, [SMALL])  # random kernels
    theirs = tmp_path / "keras.weights.h5"
    model.save_weights(theirs)
    ours = tmp_path / "ours.weights.h5"
    code, err = weights(spec, theirs, ours, SMALL)
    assert code == 0, err
    weighted = _weighted(theirs)
    expected = {
        k: v
        for k, v in _datasets(theirs).items()
        if not k.endswith("@name") or k.removesuffix("/vars@name") in weighted
    }
    got = _datasets(ours)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)

    unnamed = tmp_path / "unnamed.weights.h5"
    unnamed.write_bytes(theirs.read_bytes())
    with h5py.File(unnamed, "r+") as file:
        for group in file["layers"].values():
            if "vars" in group and "name" in group["vars"].attrs:
                del group["vars"].attrs["name"]
    again = tmp_path / "again.weights.h5"
    code, err = weights(spec, unnamed, again, SMALL)
    assert code == 0, err
    assert again.read_bytes() == ours.read_bytes()

    saved = model.get_weights()
    model.set_weights([np.zeros_like(a) for a in saved])
    model.load_weights(ours)
    for a, b in zip(saved, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _weighted(path: Path) -> set[str]:
    """The groups under layers/ whose vars hold datasets."""
    import h5py

    with h5py.File(path, "r") as file:
        return {
            f"layers/{name}"
            for name, group in file["layers"].items()
            if "vars" in group and len(group["vars"])
        }


# ------------------------------------------------------- timm's files, the hub

TIMM_MODELS = ("mobilenetv4_conv_small", "efficientnet_b0")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", params=TIMM_MODELS)
def timm_files(request, tmp_path_factory):
    """A timm model written by save_for_hf (safetensors and pickle), the logits it
    computes at 64x64, and the generated Keras model at that size."""
    import torch

    from reference_models import create, import_timm

    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    model = create(name)
    calibration = np.random.default_rng(5).standard_normal((4, 3, 64, 64))
    randomize_torch(model, calibration.astype(np.float32), seed=5)
    folder = tmp / "hf"
    import_timm().models.save_for_hf(model, folder, safe_serialization="both")
    _, graph, keras_model = build(
        SPECS / "timm" / f"{name}.yaml", "keras", tmp, [SMALL]
    )
    images = random_images(graph, seed=9)
    # train.py's checkpoint of a DDP-wrapped model (its args are a Namespace)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    checkpoint = tmp / "model_best.pth.tar"
    torch.save(
        {
            "epoch": 41,
            "arch": name,
            "state_dict": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "args": argparse.Namespace(model=name, lr=0.1, epochs=300),
            "metric": 71.3,
        },
        checkpoint,
    )
    return name, folder, checkpoint, run_torch(model, images), keras_model, images


def _hub_cache(tmp: Path, name: str, folder: Path) -> Path:
    """The Hugging Face cache layout of timm/<name>.test at one commit."""
    repo = tmp / "cache" / f"models--timm--{name}.test"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for file in ("config.json", "model.safetensors"):
        (snapshot / file).write_bytes((folder / file).read_bytes())
    return tmp / "cache"


SOURCES = ("folder", "model.safetensors", "pytorch_model.bin", "hf-hub", "train.py")


@pytest.mark.parametrize("source", SOURCES)
def test_timm_checkpoints_give_timm_logits_in_keras(
    timm_files, source, tmp_path, worst_differences
):
    name, folder, checkpoint, want, keras_model, images = timm_files
    target = tmp_path / "timm.weights.h5"
    if source == "hf-hub":
        cache = _hub_cache(tmp_path, name, folder)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mbcompile",
                "weights",
                name,
                "--set",
                SMALL,
                "--from",
                f"hf-hub:timm/{name}.test",
                "--to",
                str(target),
            ],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "HF_HUB_OFFLINE": "1",
                "HF_HUB_CACHE": str(cache),
            },
            timeout=300,
            check=False,
        )
        code, err = done.returncode, done.stderr
    else:
        path = {"folder": folder, "train.py": checkpoint}.get(source, folder / source)
        code, err = weights(name, path, target, SMALL)
    assert code == 0, err
    if source == "train.py":
        assert "read the training checkpoint's 'state_dict'" in err
        assert "removed the wrapper prefixes" in err
    if source in ("folder", "hf-hub"):  # config.json: trained at 224, run at 64
        assert "trained at 224x224" in err
    keras_model.load_weights(target)
    diff = difference(want, run_keras(keras_model, images))
    worst_differences.append((f"timm {name} {source} -> keras", diff))
    assert np.abs(want).max() > 1e-2
    assert diff <= TOLERANCE, diff


def test_config_json_is_checked_against_the_spec(tmp_path):
    """A mismatch names both values; the class count may differ (fine-tuning)."""
    folder = tmp_path / "hf"
    folder.mkdir()
    _, _, model = build(SPECS / "v1.yaml", "torch", tmp_path, ["resolution=32"])
    import torch

    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    config = {
        "architecture": "mobilenet_v1",
        "num_classes": 1000,
        "pretrained_cfg": {"input_size": [3, 32, 32], "fixed_input_size": True},
    }
    cases = {
        "architecture": (
            {"architecture": "resnet50"},
            "'resnet50', but the spec builds 'mobilenet_v1'",
        ),
        "channels": (
            {"pretrained_cfg": {"input_size": [1, 32, 32]}},
            "input_size has 1 channels, the spec 3",
        ),
        "fixed size": (
            {"pretrained_cfg": {"input_size": [3, 48, 48], "fixed_input_size": True}},
            "[3, 48, 48] is fixed, the spec takes [3, 32, 32]",
        ),
    }
    for change, fragment in cases.values():
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        target = tmp_path / "out.weights.h5"
        code, err = weights("v1", folder, target, "resolution=32")
        assert code == 2 and fragment in err, err
        assert len(err.splitlines()) == 1 and not target.exists()
    (folder / "config.json").write_text(json.dumps(config))
    code, err = weights("v1", folder, tmp_path / "ok.weights.h5", "resolution=32")
    assert code == 0, err


# ------------------------------------------------------------- fine-tuning


def test_fine_tuning_ports_all_but_the_classifier(tmp_path):
    """num_classes=10 from a 1000-class checkpoint: every other tensor equal, the
    classifier drawn as timm initialises it (U(+-1/sqrt(10)), bias 0), and the
    command names the tensors it left at their initialisation."""
    import torch

    from reference_models import create

    reference = create("efficientnet_b0")
    source = tmp_path / "b0.pt"
    torch.save(reference.state_dict(), source)
    target = tmp_path / "b0_10.pt"
    code, err = weights("efficientnet_b0", source, target, "num_classes=10")
    assert code == 0, err
    assert "left classifier.weight, classifier.bias at their initialisation" in err
    assert "the checkpoint has 1000 classes, the spec 10" in err
    tuned = torch.load(target, weights_only=True)
    for key, value in reference.state_dict().items():
        if key.startswith("classifier."):
            continue
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(tuned[key], value), key
    weight = tuned["classifier.weight"]
    assert weight.shape == (10, 1280) and not tuned["classifier.bias"].any()
    assert float(weight.abs().max()) <= 10**-0.5
    assert abs(float(weight.std()) - (10**-0.5) / 3**0.5) < 0.005  # U(-b, b): b/sqrt3
    # and it loads strictly into the generated model with 10 classes
    _, _, ours = build(
        SPECS / "timm" / "efficientnet_b0.yaml", "torch", tmp_path, ["num_classes=10"]
    )
    ours.load_state_dict(tuned, strict=True)

    headless = tmp_path / "headless.safetensors"  # timm's num_classes=0: no classifier
    from safetensors.torch import save_file

    save_file(
        {k: v for k, v in reference.state_dict().items() if "classifier" not in k},
        headless,
    )
    code, err = weights("efficientnet_b0", headless, tmp_path / "h.weights.h5")
    assert code == 0, err
    assert "the checkpoint has no classifier" in err


# ------------------------------------------------------- training checkpoints


@pytest.fixture(scope="module")
def small_state(tmp_path_factory):
    """A state_dict of v1 at width 0.25 and 32x32."""
    _, _, model = build(
        SPECS / "v1.yaml",
        "torch",
        tmp_path_factory.mktemp("small"),
        ["width_multiplier=0.25", "resolution=32"],
    )
    return model.state_dict()


def small(source, target, *extra, key=None):
    return weights(
        "v1", source, target, "width_multiplier=0.25", "resolution=32", *extra, key=key
    )


def test_training_checkpoints_prefer_ema_and_take_key(tmp_path, small_state):
    import torch

    other = {k: v + 1 if v.is_floating_point() else v for k, v in small_state.items()}
    checkpoint = tmp_path / "checkpoint-3.pth.tar"
    torch.save(
        {"epoch": 3, "state_dict": other, "state_dict_ema": small_state}, checkpoint
    )
    for key, expected in ((None, small_state), ("state_dict", other)):
        target = tmp_path / f"{key}.pt"
        code, err = small(checkpoint, target, key=key)
        assert code == 0, err
        chosen = key or "state_dict_ema"
        assert f"read the training checkpoint's '{chosen}'" in err
        got = torch.load(target, weights_only=True)
        for name, value in expected.items():
            if not name.endswith("num_batches_tracked"):
                assert torch.equal(got[name], value), name
    code, err = small(checkpoint, tmp_path / "x.pt", key="optimizer")
    assert code == 2 and "'state_dict', 'state_dict_ema'" in err


def test_renamed_state_dicts_fit_by_position(tmp_path, small_state):
    """Another implementation's attribute names: same tensors, same order."""
    import torch

    renamed = {
        f"net.layer{i}" + ".num_batches_tracked" * k.endswith("num_batches_tracked"): v
        for i, (k, v) in enumerate(small_state.items())
    }
    source = tmp_path / "renamed.pt"
    torch.save(renamed, source)
    target = tmp_path / "out.pt"
    code, err = small(source, target)
    assert code == 0, err
    assert "by position" in err and "'net.layer0' where the spec has" in err
    got = torch.load(target, weights_only=True)
    assert list(got) == list(small_state)
    shuffled = dict(reversed(list(renamed.items())))  # no order to fall back on
    torch.save(shuffled, source)
    code, err = small(source, tmp_path / "no.pt")
    assert code == 2 and "missing" in err and "unexpected" in err
    assert len(err.splitlines()) == 2  # one line each, as load_state_dict


def test_every_format_round_trips(tmp_path, small_state):
    """.pt -> .safetensors -> .weights.h5 -> .pt gives the state_dict back, and
    the .safetensors file loads strictly into the generated model."""
    import torch
    from safetensors.torch import load_file

    source = tmp_path / "start.pt"
    torch.save(small_state, source)
    chain = [
        source,
        tmp_path / "a.safetensors",
        tmp_path / "b.weights.h5",
        tmp_path / "c.pt",
    ]
    for before, after in itertools.pairwise(chain):
        code, err = small(before, after)
        assert code == 0, err
    _, _, model = build(
        SPECS / "v1.yaml", "torch", tmp_path, ["width_multiplier=0.25", "resolution=32"]
    )
    model.load_state_dict(load_file(chain[1]), strict=True)
    back = torch.load(chain[-1], weights_only=True)
    assert list(back) == list(small_state)
    for name, value in small_state.items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(back[name], value), name


# ------------------------------------------------- no framework is imported


def _modules_after(argv: list[str]) -> tuple[int, str, set[str]]:
    """Run `mbcompile ARGV` in a fresh process; the top-level modules it imported."""
    code = (
        "import json, sys\n"
        "from mbcompile import cli\n"
        f"code = cli.main({argv!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
        "sys.exit(code)\n"
    )
    done = run_python(code)
    return done.returncode, done.stderr, set(json.loads(done.stdout or "[]"))


def test_keras_weights_are_written_without_tensorflow(tmp_path, small_state):
    import torch

    source = tmp_path / "trained.pt"
    torch.save(small_state, source)
    common = ["--set", "width_multiplier=0.25", "--set", "resolution=32"]
    target = tmp_path / "out.weights.h5"
    code, err, modules = _modules_after(
        ["weights", "v1", "--from", str(source), "--to", str(target), *common]
    )
    assert code == 0, err
    assert not modules & {"tensorflow", "keras"}
    assert "torch" in modules  # to unpickle the .pt
    safetensors = tmp_path / "trained.safetensors"
    code, err = small(source, safetensors)
    assert code == 0, err
    code, err, modules = _modules_after(
        ["weights", "v1", "--from", str(safetensors), "--to", str(target), *common]
    )
    assert code == 0, err
    assert not modules & {"tensorflow", "keras", "torch", "jax"}
