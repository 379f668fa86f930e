"""examples/: each compiles, both backends agree, and costs match the frameworks."""

from __future__ import annotations

import ast

import pytest

from crosscheck import outputs, worst_difference
from helpers import ROOT, TOLERANCE, build, keras_weighted_layers
from mbcompile import compiler

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
NAMES = [p.stem for p in EXAMPLES]


def test_the_promised_examples_exist():
    assert {
        "cifar10_v2",
        "v2_035_96",
        "v3_large_k5",
        "detection_backbone",
    } <= set(NAMES)


@pytest.mark.parametrize("path", EXAMPLES, ids=NAMES)
def test_backends_agree(path, tmp_path, worst_differences):
    _, got_torch, got_keras = outputs(path, tmp_path)
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append((f"examples/{path.stem}", diff))
    assert diff <= TOLERANCE, f"max abs difference {diff:.3g}"


@pytest.mark.parametrize("path", EXAMPLES, ids=NAMES)
def test_costs_match_framework_counts(path, tmp_path):
    _, graph = compiler.load_and_expand(path)
    rep = compiler.cost_report(graph)
    _, _, torch_model = build(path, "torch", tmp_path)
    _, _, keras_model = build(path, "keras", tmp_path)
    assert rep.macs > 0
    assert sum(p.numel() for p in torch_model.parameters()) == rep.trainable_params
    trainable = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in keras_model.non_trainable_weights)
    assert (trainable, frozen) == (rep.trainable_params, rep.non_trainable_params)
    assert len(keras_weighted_layers(keras_model)) > 0


def test_cifar10_keeps_a_4x4_map():
    # 32x32 input, stem and second stage at stride 1: total stride 8 (hand-derived).
    _, graph = compiler.load_and_expand(ROOT / "examples" / "cifar10_v2.yaml")
    last_feature = graph.blocks[-2].out_shape
    assert last_feature == (1280, 4, 4)
    assert graph.shape(graph.output) == (10,)


def test_detection_backbone_outputs(tmp_path):
    # 320 / 8, / 16, / 32, with the widths of the stages that end there.
    _, got_torch, _ = outputs(ROOT / "examples" / "detection_backbone.yaml", tmp_path)
    shapes = {name: value.shape[1:] for name, value in got_torch.items()}
    assert shapes == {
        "stride8": (48, 40, 40),
        "stride16": (128, 20, 20),
        "stride32": (192, 10, 10),
    }


def test_v2_035_96_matches_keras_applications():
    """With keras.applications' conventions the example is MobileNetV2(alpha=0.35)
    at 96x96: same trainable and non-trainable counts as the model keras builds."""
    import keras

    reference = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None
    )
    _, graph = compiler.load_and_expand(
        ROOT / "examples" / "v2_035_96.yaml", ["conventions=keras_applications"]
    )
    rep = compiler.cost_report(graph)
    trainable = sum(int(w.numpy().size) for w in reference.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in reference.non_trainable_weights)
    assert (rep.trainable_params, rep.non_trainable_params) == (trainable, frozen)


@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("name", NAMES)
def test_committed_example_is_standalone(backend, name):
    path = ROOT / "generated" / backend / "examples" / f"{name}.py"
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {backend}
