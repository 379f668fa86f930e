"""Inference form: batch norm folded into the convolutions (`--fold-bn`).

Trained (random, calibrated) weights of the training form are folded with
mbcompile.backends.weights.fold_batch_norm or `mbcompile weights --fold-bn`; the folded
network must compute what the training form computes in eval mode.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import (
    CANONICAL,
    ROOT,
    SPECS,
    TOLERANCE,
    assert_ruff_clean,
    build,
    difference,
    expects_pixels,
    import_source,
    keras_layers_in_ir_order,
    load_torch_groups,
    random_images,
    randomize_torch,
    run_keras,
    run_torch,
    torch_param_modules,
    torch_tensors,
)
from mbcompile import cli, compiler
from mbcompile.backends.weights import fold_batch_norm, param_ops, torch_to_keras

FOLD = "fold_batch_norm=true"
CASES = [(SPECS / f"{name}.yaml", ()) for name in CANONICAL]
CASES += [
    (SPECS / "v3_small.yaml", ("conventions=keras_applications", "resolution=193"))
]
CASES += [(ROOT / "examples" / "cifar10_v2.yaml", ())]
# timm's layout: BatchNormAct2d, squeeze-excite with SiLU, universal inverted
# bottlenecks, a conv_head with batch norm after pooling.
CASES += [
    (SPECS / "timm" / f"{name}.yaml", ("resolution=128",))
    for name in ("efficientnet_b0", "mobilenetv4_conv_small")
]
# Space-to-depth's conv, squeeze-excite in fused rows, per-block squeeze activations.
CASES += [(SPECS / "timm" / "efficientnet_x_b3.yaml", ("resolution=128",))]


def trained(spec, tmp_path, overrides=()):
    _, graph, model = build(spec, "torch", tmp_path, overrides)
    rescaled = expects_pixels(graph)
    randomize_torch(model, random_images(graph, seed=11, pixels=rescaled), seed=11)
    return graph, model, random_images(graph, seed=2, pixels=rescaled)


@pytest.mark.parametrize(
    "spec,overrides", CASES, ids=[f"{s.stem}-{len(o)}" for s, o in CASES]
)
def test_folded_models_compute_the_training_form(spec, overrides, tmp_path):
    import torch

    graph, model, images = trained(spec, tmp_path, overrides)
    reference = run_torch(model, images)
    _, folded_graph, folded_torch = build(spec, "torch", tmp_path, (*overrides, FOLD))
    _, _, folded_keras = build(spec, "keras", tmp_path, (*overrides, FOLD))

    per_op = [torch_tensors(m) for m in torch_param_modules(model)]
    ops = param_ops(folded_graph)
    folded = fold_batch_norm(param_ops(graph), ops, per_op)
    load_torch_groups(folded_torch, folded)
    for op, layer, arrays in zip(
        ops, keras_layers_in_ir_order(folded_graph, folded_keras), folded, strict=True
    ):
        layer.set_weights(torch_to_keras(op, arrays))

    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded_torch.modules())
    assert not any(
        type(layer).__name__ == "BatchNormalization" for layer in folded_keras.layers
    )
    assert difference(reference, run_torch(folded_torch, images)) <= TOLERANCE
    assert difference(reference, run_keras(folded_keras, images)) <= TOLERANCE


def test_folded_costs():
    _, graph = compiler.load_and_expand(SPECS / "v2.yaml")
    _, folded_graph = compiler.load_and_expand(SPECS / "v2.yaml", [FOLD])
    rep = compiler.cost_report(graph)
    folded = compiler.cost_report(folded_graph)
    bn_channels = rep.non_trainable_params // 2  # mean and variance per channel
    # gamma and beta go, one bias per channel comes: trainable - 2C + C.
    assert folded.trainable_params == rep.trainable_params - bn_channels
    assert folded.non_trainable_params == 0
    assert folded.macs == rep.macs
    assert not [n for n in folded_graph.order if folded_graph.node(n)["kind"] == "bn"]


@pytest.mark.parametrize("target_suffix", [".pt", ".weights.h5"])
def test_weights_command_folds_trained_weights(target_suffix, tmp_path, capsys):
    import torch

    spec = SPECS / "v3_small.yaml"
    _, model, images = trained(spec, tmp_path)
    reference = run_torch(model, images)
    source, target = tmp_path / "trained.pt", tmp_path / f"folded{target_suffix}"
    torch.save(model.state_dict(), source)

    argv = [
        "weights",
        str(spec),
        "--fold-bn",
        "--from",
        str(source),
        "--to",
        str(target),
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    if target_suffix == ".pt":
        _, _, folded = build(spec, "torch", tmp_path, [FOLD])
        folded.load_state_dict(torch.load(target, weights_only=True), strict=True)
        got = run_torch(folded, images)
    else:
        _, _, folded = build(spec, "keras", tmp_path, [FOLD])
        folded.load_weights(target)
        got = run_keras(folded, images)
    assert difference(reference, got) <= TOLERANCE


def test_weights_command_refuses_a_folded_source(tmp_path, capsys):
    import torch

    _, _, folded = build(SPECS / "v3_small.yaml", "torch", tmp_path, [FOLD])
    source = tmp_path / "folded.pt"
    torch.save(folded.state_dict(), source)
    argv = ["weights", str(SPECS / "v3_small.yaml"), "--fold-bn"]
    argv += ["--from", str(source), "--to", str(tmp_path / "out.pt")]
    assert cli.main(argv) == 2
    missing, unexpected = capsys.readouterr().err.strip().splitlines()
    # As load_state_dict reports it, one line each: the training form's batch norms
    # are missing, the folded convolutions' biases have no place in it.
    assert "missing 136 tensor(s)" in missing
    assert "'features.0.1.running_mean'" in missing
    assert "34 unexpected tensor(s)" in unexpected
    assert "'features.0.0.bias' (16,)" in unexpected
    assert not (tmp_path / "out.pt").exists()


def test_cli_flag_writes_folded_source_beside_the_training_form(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mbcompile", str(SPECS / "v2.yaml"), "--fold-bn"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for backend in ("keras", "torch"):
        text = (tmp_path / "generated" / backend / "v2_folded.py").read_text()
        assert "BatchNorm" not in text
        assert text == compiler.compile_spec(SPECS / "v2.yaml", backend, [FOLD])
    assert not (tmp_path / "generated" / "torch" / "v2.py").exists()


def test_folded_source_is_ruff_clean(tmp_path):
    for name in (*CANONICAL, "../examples/detection_backbone"):
        for backend in ("keras", "torch"):
            text = compiler.compile_spec(SPECS / f"{name}.yaml", backend, [FOLD])
            (tmp_path / f"{backend}_{name.replace('/', '_')}.py").write_text(text)
    assert_ruff_clean(tmp_path)


def test_folded_module_is_standalone(tmp_path):
    text = compiler.compile_spec(SPECS / "v1.yaml", "torch", [FOLD])
    assert "import mbcompile" not in text
    assert import_source(text, tmp_path).build_model() is not None
