"""Canonical specs reproduce the reference libraries' published figures, and the
cost model agrees with both frameworks' own counts for every spec we ship.

The expected numbers were measured from torchvision 0.28.0 and keras 3.15.1
(see tests/reference/README.md), independently of mbcompile. The framework counts
come from the generated models themselves: parameters and buffers as each framework
holds them, MACs from forward hooks (PyTorch) and from layer and op output shapes
(Keras).
"""

from __future__ import annotations

import math

import pytest

from helpers import CANONICAL, ROOT, SPECS, build, keras_weighted_layers
from mbcompile import compiler
from mbcompile.analysis.cost import report

# name: (trainable parameters, batch-norm statistics, MACs at 224x224)
REFERENCE = {
    "v1": (4_231_976, 21_888, 568_740_352),
    "v2": (3_504_872, 34_112, 300_774_272),
    "v3_large": (5_483_032, 24_400, 216_589_760),
    "v3_small": (2_542_856, 12_112, 56_510_400),
}


@pytest.mark.parametrize("name", CANONICAL)
def test_report_matches_reference(name):
    _, graph = compiler.load_and_expand(SPECS / f"{name}.yaml")
    rep = compiler.cost_report(graph)
    assert (rep.trainable_params, rep.non_trainable_params, rep.macs) == REFERENCE[name]


# Every spec whose counts the frameworks must confirm: all of specs/ (the canonical
# ones also held against REFERENCE), any examples/*.yaml, and variants that change widths,
# resolution and conventions. (label, spec path, overrides)
CASES = [(p.stem, p, ()) for p in sorted(SPECS.glob("*.yaml"))]
CASES += [
    (f"examples/{p.name}", p, ()) for p in sorted((ROOT / "examples").glob("*.yaml"))
]
CASES += [
    (f"{name}@{','.join(sets)}", SPECS / f"{name}.yaml", sets)
    for name, sets in (
        ("v1", ("width_multiplier=0.25", "resolution=128")),
        ("v2", ("width_multiplier=0.5", "resolution=160")),
        ("v3_large", ("conventions=keras_applications", "width_multiplier=0.75")),
        ("v3_small", ("resolution=192",)),
    )
]


def ours(graph) -> tuple[int, int, int]:
    rep = report(graph, "case", graph.shape("input")[1])
    return rep.trainable_params, rep.non_trainable_params, rep.macs


def torch_counts(model, input_shape) -> tuple[int, int, int]:
    """(trainable, BN statistics, MACs): parameters and buffers as torch holds them,
    MACs from forward hooks on every Conv2d and Linear, and on the generated
    CondConv2d and BlurPool2d, which convolve with F.conv2d."""
    import torch

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    statistics = sum(
        b.numel()
        for n, b in model.named_buffers()
        if n.endswith(("running_mean", "running_var"))
    )
    counted = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.weight[0].numel()  # (in / groups) * kh * kw
            counted.append(output.numel() * k)
        elif isinstance(module, torch.nn.Linear):
            counted.append(module.in_features * module.out_features * output.shape[0])
        elif type(module).__name__ == "CondConv2d":
            # F.conv2d with each sample's kernel, (in / groups) * kh * kw per output
            # element, plus mixing that kernel (routing @ weight: experts x size)
            per_output = module.weight.shape[1] // module.out_channels
            counted.append(output.numel() * per_output + module.weight.numel())
        else:  # BlurPool2d: a fixed depthwise F.conv2d, its filter's taps per output
            counted.append(output.numel() * module.filt.numel())

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
        or type(module).__name__ in ("CondConv2d", "BlurPool2d")
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    return trainable, statistics, sum(counted)


def keras_counts(model) -> tuple[int, int, int]:
    """(trainable, BN statistics, MACs): Keras' weights, MACs from layer shapes."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    statistics = sum(int(w.numpy().size) for w in model.non_trainable_weights)
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
    # Convolutions written with keras.ops rather than layers: anti-aliasing's blur
    # (a constant depthwise kernel) and CondConv's per-sample kernels (a 1x1 conv as
    # an einsum, a depthwise one as a product per tap; mixing them is its Dense).
    for op in model.operations:
        kind, node = type(op).__name__, op._inbound_nodes[0]
        if kind == "DepthwiseConv":
            kh, kw = node.arguments.args[1].shape[:2]
            counted += _elements(op.output) * kh * kw
        elif kind == "Einsum":  # every index's size, once per sample
            sizes = {}
            inputs, _ = op.subscripts.split("->")
            for letters, tensor in zip(
                inputs.split(","), node.input_tensors, strict=True
            ):
                sizes.update(zip(letters, (d or 1 for d in tensor.shape), strict=True))
            counted += math.prod(sizes.values())
        elif kind == "Multiply" and any(map(_per_sample_kernel, node.input_tensors)):
            counted += _elements(op.output)
    return trainable, statistics, counted


def _elements(tensor) -> int:
    return math.prod(tensor.shape[1:])


def _per_sample_kernel(tensor) -> bool:
    """Whether `tensor` is a Dense layer's output reshaped, transposed or sliced:
    a kernel computed per sample (CondConv's), so a product with it is a conv tap."""
    op = tensor._keras_history.operation
    while type(op).__name__ in ("Reshape", "Transpose", "GetItem"):
        op = op._inbound_nodes[0].input_tensors[0]._keras_history.operation
    return type(op).__name__ == "Dense"


@pytest.mark.parametrize(("label", "path", "sets"), CASES, ids=[c[0] for c in CASES])
def test_torch_model_counts(label, path, sets, tmp_path):
    _, graph, model = build(path, "torch", tmp_path, sets)
    counts = torch_counts(model, graph.shape("input"))
    assert counts == ours(graph)
    if label in REFERENCE:
        assert counts == REFERENCE[label]


@pytest.mark.parametrize(("label", "path", "sets"), CASES, ids=[c[0] for c in CASES])
def test_keras_model_counts(label, path, sets, tmp_path):
    _, graph, model = build(path, "keras", tmp_path, sets)
    counts = keras_counts(model)
    assert counts == ours(graph)
    if label in REFERENCE:
        assert counts == REFERENCE[label]
