"""`mbcompile weights`: PyTorch state_dict files <-> Keras weight files, any spec."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    SPECS,
    TOLERANCE,
    build,
    difference,
    expects_pixels,
    keras_arrays,
    keras_weighted_layers,
    random_images,
    randomize_keras,
    randomize_torch,
    run_keras,
    run_torch,
)
from mbcompile import cli


def weights_command(capsys, spec, source, target, *overrides) -> tuple[int, str]:
    argv = ["weights", str(SPECS / f"{spec}.yaml"), "--from", str(source)]
    argv += ["--to", str(target)]
    for override in overrides:
        argv += ["--set", override]
    code = cli.main(argv)
    return code, capsys.readouterr().err


def torch_state(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def trained_torch(spec, tmp_path, overrides=()):
    """A generated PyTorch model with random weights and calibrated statistics."""
    _, graph, model = build(SPECS / f"{spec}.yaml", "torch", tmp_path, overrides)
    rescaled = expects_pixels(graph)
    randomize_torch(model, random_images(graph, seed=3, pixels=rescaled), seed=5)
    return graph, model, rescaled


# (spec, overrides): a depthwise multiplier and 1x1-conv classifier (v1), SE convs
# with biases (v3_small), keras conventions' uneven pads and except-first expansion,
# the layer units (mixed convs' groups, CondConv kernels and the routing layer
# stored after them).
PT_CASES = [
    ("v1", ("depth_multiplier=2", "width_multiplier=0.5")),
    ("v3_small", ()),
    ("v2", ("conventions=keras_applications", "resolution=161")),
    ("../examples/layer_units", ("resolution=96",)),
]


@pytest.mark.parametrize(
    "spec,overrides", PT_CASES, ids=[f"{s}-{len(o)}" for s, o in PT_CASES]
)
def test_pt_to_h5_to_pt_is_identical(spec, overrides, tmp_path, capsys):
    import torch

    graph, model, rescaled = trained_torch(spec, tmp_path, overrides)
    original = tmp_path / "model.pt"
    torch.save(model.state_dict(), original)

    keras_file = tmp_path / "model.weights.h5"
    code, err = weights_command(capsys, spec, original, keras_file, *overrides)
    assert code == 0, err
    assert keras_file.is_file()

    # The Keras file loads into the generated Keras model and computes the same.
    _, _, keras_model = build(SPECS / f"{spec}.yaml", "keras", tmp_path, overrides)
    keras_model.load_weights(keras_file)
    images = random_images(graph, seed=1, pixels=rescaled)
    diff = difference(run_torch(model, images), run_keras(keras_model, images))
    assert diff <= TOLERANCE

    back = tmp_path / "back.pt"
    code, err = weights_command(capsys, spec, keras_file, back, *overrides)
    assert code == 0, err
    before, after = torch_state(original), torch_state(back)
    assert list(after) == list(before)
    for key, tensor in before.items():
        if key.endswith("num_batches_tracked"):
            continue  # a step counter Keras has no place for; written as 0
        assert torch.equal(after[key], tensor), key
    # and it loads strictly into the generated PyTorch model
    _, _, fresh = build(SPECS / f"{spec}.yaml", "torch", tmp_path, overrides)
    fresh.load_state_dict(after, strict=True)


H5_CASES = [("v2", ("conventions=keras_applications",)), ("v3_large", ())]


@pytest.mark.parametrize(
    "spec,overrides", H5_CASES, ids=[f"{s}-{len(o)}" for s, o in H5_CASES]
)
def test_h5_to_pt_to_h5_is_identical(spec, overrides, tmp_path, capsys):
    _, graph, keras_model = build(SPECS / f"{spec}.yaml", "keras", tmp_path, overrides)
    c, h, w = graph.shape("input")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, h, w, c)).astype("float32")
    randomize_keras(keras_model, pixels, seed=2)
    original = tmp_path / "original.weights.h5"
    keras_model.save_weights(original)

    pt = tmp_path / "model.pt"
    code, err = weights_command(capsys, spec, original, pt, *overrides)
    assert code == 0, err
    again = tmp_path / "again.weights.h5"
    code, err = weights_command(capsys, spec, pt, again, *overrides)
    assert code == 0, err

    _, _, reloaded = build(SPECS / f"{spec}.yaml", "keras", tmp_path, overrides)
    reloaded.load_weights(again)
    for want, got in zip(
        keras_weighted_layers(keras_model), keras_weighted_layers(reloaded), strict=True
    ):
        for a, b in zip(keras_arrays(want), keras_arrays(got), strict=True):
            np.testing.assert_array_equal(b, a)


def test_keras_applications_h5_file_to_torch(tmp_path, capsys, worst_differences):
    """A legacy .h5 in keras.applications' own format becomes a PyTorch state_dict
    with which the generated module computes keras.applications' logits."""
    import keras

    reference = keras.applications.MobileNetV3Small(
        input_shape=(224, 224, 3),
        alpha=0.75,
        weights=None,
        classifier_activation=None,
    )
    pixels = np.random.default_rng(4).uniform(0, 255, (2, 224, 224, 3))
    randomize_keras(reference, pixels.astype("float32"), seed=4)
    legacy = tmp_path / "mobilenet_v3_small.h5"
    reference.save(legacy)

    overrides = ("conventions=keras_applications", "width_multiplier=0.75")
    pt = tmp_path / "from_keras.pt"
    code, err = weights_command(capsys, "v3_small", legacy, pt, *overrides)
    assert code == 0, err
    _, _, model = build(SPECS / "v3_small.yaml", "torch", tmp_path, overrides)
    model.load_state_dict(torch_state(pt), strict=True)

    images = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3))
    images = images.astype("float32")
    want = np.asarray(reference(images, training=False))
    got = run_torch(model, np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    diff = difference(want, got)
    worst_differences.append(("keras.applications .h5 -> pt v3_small a0.75", diff))
    assert np.abs(want).max() > 1e-2
    assert diff <= TOLERANCE


# ---------------------------------------------------------------- refusals (exit 2)


@pytest.fixture(scope="module")
def v2_files(tmp_path_factory):
    """A v2 state_dict and Keras file at width 1.0 (for specs they do not fit)."""
    import torch

    tmp = tmp_path_factory.mktemp("v2files")
    _, _, model = build(SPECS / "v2.yaml", "torch", tmp)
    pt = tmp / "v2.pt"
    torch.save(model.state_dict(), pt)
    _, _, keras_model = build(SPECS / "v2.yaml", "keras", tmp)
    h5 = tmp / "v2.weights.h5"
    keras_model.save_weights(h5)
    return pt, h5


def test_refuses_state_dict_of_another_width(v2_files, tmp_path, capsys):
    pt, _ = v2_files
    target = tmp_path / "out.weights.h5"
    code, err = weights_command(capsys, "v2", pt, target, "width_multiplier=0.5")
    assert code == 2
    # the stem is the first tensor that does not fit: 32 channels, 16 at width 0.5
    assert "'features.0.0.weight' has shape (32, 3, 3, 3)" in err
    assert "(16, 3, 3, 3)" in err
    assert len(err.strip().splitlines()) == 1
    assert not target.exists()


def test_refuses_keras_file_of_another_width(v2_files, tmp_path, capsys):
    _, h5 = v2_files
    target = tmp_path / "out.pt"
    code, err = weights_command(capsys, "v2", h5, target, "width_multiplier=0.5")
    assert code == 2
    assert "'Conv1/0' has shape (3, 3, 3, 32)" in err  # layer Conv1's kernel
    assert "the spec needs (3, 3, 3, 16)" in err
    assert not target.exists()


def test_refuses_truncated_and_extended_state_dicts(v2_files, tmp_path, capsys):
    import torch

    pt, _ = v2_files
    state = torch_state(pt)
    keys = list(state)
    short = tmp_path / "short.pt"
    torch.save({k: state[k] for k in keys[:-1]}, short)  # no classifier bias
    code, err = weights_command(capsys, "v2", short, tmp_path / "a.weights.h5")
    assert code == 2 and "classifier.logits" in err

    long = tmp_path / "long.pt"
    torch.save({**state, "extra.weight": torch.zeros(3)}, long)
    code, err = weights_command(capsys, "v2", long, tmp_path / "b.weights.h5")
    assert code == 2 and "'extra.weight'" in err


def test_refuses_bad_arguments(v2_files, tmp_path, capsys):
    pt, h5 = v2_files
    cases = [
        (pt, tmp_path / "x.h5", "*.weights.h5"),
        (tmp_path / "missing.pt", tmp_path / "x.weights.h5", "file not found"),
        (pt, tmp_path / "x.npz", "unknown file type"),
    ]
    for source, target, message in cases:
        code, err = weights_command(capsys, "v2", source, target)
        assert code == 2 and message in err, err
    not_a_state_dict = tmp_path / "list.pt"
    import torch

    torch.save([1, 2, 3], not_a_state_dict)
    code, err = weights_command(
        capsys, "v2", not_a_state_dict, tmp_path / "y.weights.h5"
    )
    assert code == 2 and "state_dict" in err
    code, err = weights_command(capsys, "v2", pt, h5.parent / "z.weights.h5", "nope=1")
    assert code == 2


def test_missing_framework_names_the_extra(v2_files, tmp_path, capsys, monkeypatch):
    """Only a pickled file needs torch (to unpickle it, or to write a .pt)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else real(name, *a),
    )
    pt, h5 = v2_files
    code, err = weights_command(capsys, "v2", pt, tmp_path / "x.weights.h5")
    assert code == 2
    assert "needs torch" in err and "pip install 'mbcompile[torch]'" in err
    code, err = weights_command(capsys, "v2", h5, tmp_path / "x.safetensors")
    assert code == 0, err
