"""Canonical specs reproduce the reference libraries' published figures.

The expected numbers were measured from torchvision 0.28.0 and keras 3.15.1
(see tests/reference/README.md), independently of mbcompile.
"""

from __future__ import annotations

import pytest

from helpers import CANONICAL, SPECS, build, keras_weighted_layers
from mbcompile import compiler

# name: (trainable parameters, batch-norm statistics, MACs at 224x224)
REFERENCE = {
    "v1": (4_231_976, 21_888, 568_740_352),
    "v2": (3_504_872, 34_112, 300_774_272),
    "v3_large": (5_483_032, 24_400, 216_589_760),
    "v3_small": (2_542_856, 12_112, 56_510_400),
}


@pytest.mark.parametrize("name", CANONICAL)
def test_report_matches_reference(name):
    loaded, graph = compiler.load_and_expand(SPECS / f"{name}.yaml")
    rep = compiler.cost_report(loaded, graph)
    assert (rep.trainable_params, rep.non_trainable_params, rep.macs) == REFERENCE[name]


@pytest.mark.parametrize("name", CANONICAL)
def test_torch_model_counts(name, tmp_path):
    import torch

    _, _graph, model = build(SPECS / f"{name}.yaml", "torch", tmp_path)
    trainable, statistics, macs = REFERENCE[name]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    buffers = [
        b
        for n, b in model.named_buffers()
        if n.endswith(("running_mean", "running_var"))
    ]
    assert sum(b.numel() for b in buffers) == statistics

    counted = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.weight[0].numel()  # (in / groups) * kh * kw
            counted.append(output.numel() * k)
        else:
            counted.append(module.in_features * module.out_features * output.shape[0])

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert sum(counted) == macs


@pytest.mark.parametrize("name", CANONICAL)
def test_keras_model_counts(name, tmp_path):
    _, _, model = build(SPECS / f"{name}.yaml", "keras", tmp_path)
    trainable, statistics, macs = REFERENCE[name]
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == trainable
    assert sum(int(w.numpy().size) for w in model.non_trainable_weights) == statistics
    assert model.count_params() == trainable + statistics

    counted = 0
    for layer in keras_weighted_layers(model):
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            kernel = layer.get_weights()[0]
            out_positions = 1
            for d in layer.output.shape[1:-1]:
                out_positions *= d
            # Conv2D (kh, kw, in, out), DepthwiseConv2D (kh, kw, C, m), Dense (in, out):
            # every kernel entry is one multiply-accumulate per output position.
            counted += out_positions * kernel.size
    assert counted == macs
