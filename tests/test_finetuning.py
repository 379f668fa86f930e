"""The fine-tuning interface of generated models: build_model(num_classes=...,
dropout=...) in both frameworks, reset_classifier() in PyTorch as timm has it;
backbones keep build_model() without them."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from helpers import ROOT, SPECS, build, import_source, random_images
from mbcompile import compiler

SPECS_UNDER_TEST = [
    SPECS / "v3_small.yaml",
    SPECS / "timm" / "mobilenetv4_conv_small.yaml",
]


def module_for(spec, backend, tmp_path, overrides=()):
    _, graph = compiler.load_and_expand(spec, [*overrides, "resolution=64"])
    return graph, import_source(compiler.generate(graph, backend), tmp_path, backend)


@pytest.mark.parametrize("spec", SPECS_UNDER_TEST, ids=lambda p: p.stem)
def test_torch_classes_and_dropout_override_the_spec(spec, tmp_path):
    import torch

    graph, module = module_for(spec, "torch", tmp_path)
    model = module.build_model(num_classes=10, dropout=0.3).eval()
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.3]
    images = torch.from_numpy(random_images(graph))
    with torch.no_grad():
        assert model(images).shape == (2, 10)
        model.reset_classifier(5)
        assert model(images).shape == (2, 5)
        model.reset_classifier(0)  # no classifier: the features it would classify
        features = model(images)
    assert features.shape[0] == 2 and features.shape[1] > 5
    # The spec's values stay the defaults.
    assert module.build_model().eval()(images).shape == (2, 1000)


@pytest.mark.parametrize("spec", SPECS_UNDER_TEST, ids=lambda p: p.stem)
def test_keras_classes_and_dropout_override_the_spec(spec, tmp_path):
    import keras

    graph, module = module_for(spec, "keras", tmp_path)
    model = module.build_model(num_classes=10, dropout=0.3)
    rates = [
        layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)
    ]
    assert rates == [0.3]
    images = random_images(graph).transpose(0, 2, 3, 1)
    assert np.asarray(model(images, training=False)).shape == (2, 10)
    assert module.build_model().output_shape == (None, 1000)


def test_backbones_keep_their_plain_build_model(tmp_path):
    for backend in ("torch", "keras"):
        _, module = module_for(
            ROOT / "examples" / "detection_backbone.yaml", backend, tmp_path
        )
        assert not inspect.signature(module.build_model).parameters
        if backend == "torch":
            assert not hasattr(module.build_model(), "reset_classifier")


def std_bound(std: float, kurtosis: float, n: int) -> float:
    """Six standard errors of the std of n values drawn with this std and kurtosis:
    std * sqrt((kurtosis - 1) / (4 n))."""
    return 6 * std * ((kurtosis - 1) / (4 * n)) ** 0.5


def test_torch_reset_classifier_initialises_as_the_reference(tmp_path):
    """The new logits layer is drawn as the profile draws linear layers:
    torchvision N(0, 0.01), timm U(+-1/sqrt(classes)) (seeded draws)."""
    import torch

    _, _, tv = build(SPECS / "v3_small.yaml", "torch", tmp_path)
    torch.manual_seed(0)
    tv.reset_classifier(5000)
    weight = tv.classifier[-1].weight
    assert abs(float(weight.std()) - 0.01) < std_bound(0.01, 3.0, weight.numel())
    _, _, timm_model = build(SPECS / "timm" / "efficientnet_b0.yaml", "torch", tmp_path)
    torch.manual_seed(0)
    timm_model.reset_classifier(400)
    weight = timm_model.classifier.weight
    assert float(weight.abs().max()) <= 400**-0.5
    std = 400**-0.5 / 3**0.5  # of U(-b, b): b / sqrt(3); its kurtosis is 1.8
    assert abs(float(weight.std()) - std) < std_bound(std, 1.8, weight.numel())
