"""Helpers for tests that build and run generated models.

The one numerical tolerance of the cross-framework checks lives here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from mbcompile import cli, compiler
from mbcompile.backends.keras import layer_names
from mbcompile.backends.weights import keras_to_torch, param_ops, torch_to_keras

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
CANONICAL = ("v1", "v2", "v3_large", "v3_small")

# The one tolerance of every numerical cross-check, in float32: two outputs agree when
# max |reference - other| <= TOLERANCE * max(1, max |reference|) (see `difference`).
TOLERANCE = 1e-4


def difference(reference, other) -> float:
    """max |reference - other| in units of max(1, max |reference|): at most TOLERANCE
    for outputs that agree. Logits of unit scale are compared absolutely; larger
    outputs (feature maps, logits of untrained networks) relative to their size."""
    reference, other = np.asarray(reference), np.asarray(other)
    scale = max(1.0, float(np.abs(reference).max()))
    return float(np.abs(reference - other).max()) / scale


_counter = itertools.count()


def run_cli(argv) -> tuple[int, str, str]:
    """`mbcompile ARGV` in this process: (exit code, standard output, standard
    error). Needs no pytest fixture, so hypothesis tests can call it too."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def run_python(code: str, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -c CODE` in a fresh process with this checkout on the path."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=timeout,
        check=False,
    )


def run_limited(argv, limit: int) -> subprocess.CompletedProcess:
    """`mbcompile ARGV` in a fresh process whose files may not pass `limit` bytes
    (`ulimit -f`): writes past it fail with EFBIG (SIGXFSZ ignored, as Python
    starts)."""
    return run_python(
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from mbcompile import cli\n"
        f"sys.exit(cli.main({[str(a) for a in argv]!r}))\n"
    )


def import_source(text: str, tmp_path: Path, stem: str = "generated_model"):
    """Import generated source as a fresh module (never from generated/)."""
    name = f"{stem}_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build(spec_path, backend: str, tmp_path: Path, overrides=()):
    """(graph, model) for a spec and backend, from freshly generated source."""
    loaded, graph = compiler.load_and_expand(spec_path, overrides)
    module = import_source(compiler.generate(graph, backend), tmp_path, backend)
    return loaded, graph, module.build_model()


# ----------------------------------------------------------------------- PyTorch


def torch_param_modules(model):
    """The modules holding weights, in registration order: the IR's parametric ops
    (layer scale: the generated LayerScale module, timm's LayerScale2d; CondConv:
    the generated and timm's CondConv2d)."""
    from torch import nn

    kinds = (nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.Linear)
    return [
        m
        for m in model.modules()
        if isinstance(m, kinds)
        or is_layer_scale(m)
        or is_other_norm(m)
        or is_cond_conv(m)
    ]


def is_layer_scale(module) -> bool:
    return type(module).__name__ in ("LayerScale", "LayerScale2d")


def is_cond_conv(module) -> bool:
    return type(module).__name__ == "CondConv2d"


def is_batch_norm(module) -> bool:
    from torch import nn

    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def is_other_norm(module) -> bool:
    """A norm without running statistics: GroupNorm and LayerNorm (timm's
    GroupNormAct, LayerNormAct2d and ours), EvoNorm-S0 (timm's EvoNorm2dS0, ours),
    RMSNorm (timm's RmsNorm2d and RmsNormAct2d, our RmsNormAct)."""
    from torch import nn

    named = type(module).__name__ in (
        "EvoNorm2dS0",
        "EvoNormS0",
        "RmsNorm2d",
        "RmsNormAct2d",
        "RmsNormAct",
    )
    return isinstance(module, (nn.GroupNorm, nn.LayerNorm)) or named


def torch_tensors_live(module):
    """A parametric module's tensors in state_dict order (weight[, bias], BN's
    running statistics, EvoNorm's v), as the module holds them (RMSNorm: a weight
    and no bias at all)."""
    if is_batch_norm(module):
        return [module.weight, module.bias, module.running_mean, module.running_var]
    if is_layer_scale(module):
        return [module.gamma]
    bias = getattr(module, "bias", None)  # the generated CondConv2d has none
    extra = [module.v] if getattr(module, "v", None) is not None else []
    return [module.weight] + ([bias] if bias is not None else []) + extra


def torch_tensors(module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy() for t in torch_tensors_live(module)]


def load_torch_groups(model, groups: list[list[np.ndarray]]) -> None:
    """Copy PyTorch-layout arrays, one group per parametric module, into `model`."""
    import torch

    modules = torch_param_modules(model)
    with torch.no_grad():
        for module, arrays in zip(modules, groups, strict=True):
            for target, array in zip(torch_tensors_live(module), arrays, strict=True):
                target.copy_(torch.from_numpy(np.ascontiguousarray(array)))


ROUTING_SCALE = 0.1  # of CondConv's routing weights (randomize_torch says why)


def randomize_torch(model, images: np.ndarray, seed: int = 0) -> None:
    """Random weights, and batch-norm statistics measured on `images`.

    Random running statistics would let activations grow block after block until
    float32 rounding alone exceeds the tolerance; statistics measured on real
    activations keep every layer near unit scale, as in a trained network. Gamma and
    beta stay random, so no batch norm is an identity; so do the other norms'
    vectors (weight[, bias, EvoNorm's v]; RMSNorm's weight alone).

    CondConv's routing layers (`routing_fn`, timm's name and the generated code's)
    get ROUTING_SCALE of a fan-in-scaled weight: with the full scale each image
    mixed very different kernels, statistics measured on some images fitted others
    poorly, and activations of other images grew to std 114 in the last stage of
    tf_efficientnet_cc_b1_8e (6253 with statistics of 32 images), where float32
    rounding alone (timm's own) reached 2% of its logits. Scaled, routing still
    varies from image to image (and its bias at full scale from expert to expert),
    and logits stay under |8|.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    modules = torch_param_modules(model)
    routing = {
        id(m.routing_fn)
        for m in model.modules()
        if isinstance(getattr(m, "routing_fn", None), torch.nn.Linear)
    }
    momenta = {m: m.momentum for m in modules if is_batch_norm(m)}
    with torch.no_grad():
        for module in modules:
            if is_layer_scale(module):
                module.gamma.copy_(torch.rand(module.gamma.shape, generator=gen) + 0.5)
            elif is_other_norm(module):
                weight, *rest = torch_tensors_live(module)
                weight.copy_(torch.rand(weight.shape, generator=gen) + 0.5)
                if rest:  # RMSNorm has no bias
                    bias, *v = rest
                    bias.copy_(torch.randn(bias.shape, generator=gen) * 0.1)
                    for tensor in v:  # EvoNorm's: inside its sigmoid
                        tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif is_batch_norm(module):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.reset_running_stats()
                module.momentum = None  # cumulative average: exactly this batch's stats
            else:
                fan_in = module.weight[0].numel()
                if is_cond_conv(module):  # a flattened (O, I, k, k) kernel per expert
                    fan_in //= module.out_channels
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
                module.weight.mul_((1.0 / fan_in) ** 0.5)
                if id(module) in routing:
                    module.weight.mul_(ROUTING_SCALE)
                if getattr(module, "bias", None) is not None:
                    module.bias.copy_(
                        torch.randn(module.bias.shape, generator=gen) * 0.1
                    )
        model.train()
        model(torch.from_numpy(images))
        model.eval()
    for module, momentum in momenta.items():
        module.momentum = momentum


# ----------------------------------------------------------------------- Keras


def keras_weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def keras_arrays(layer) -> list[np.ndarray]:
    return [np.asarray(w) for w in layer.get_weights()]


# ----------------------------------------------------------------------- porting


def keras_layers_in_ir_order(graph, model) -> list:
    """The model's weighted layers in the IR's parametric order, found by name (Keras
    orders its layers otherwise around parallel branches)."""
    layers = [model.get_layer(name) for name in layer_names(graph)]
    assert len(layers) == len(keras_weighted_layers(model))
    return layers


def port_torch_to_keras(graph, torch_model, keras_model) -> None:
    ops = param_ops(graph)
    modules = torch_param_modules(torch_model)
    layers = keras_layers_in_ir_order(graph, keras_model)
    assert len(ops) == len(modules) == len(layers), (
        len(ops),
        len(modules),
        len(layers),
    )
    for op, module, layer in zip(ops, modules, layers, strict=True):
        layer.set_weights(torch_to_keras(op, torch_tensors(module)))


def port_keras_to_torch(graph, keras_model, torch_model) -> None:
    ops = param_ops(graph)
    layers = keras_layers_in_ir_order(graph, keras_model)
    groups = [
        keras_to_torch(op, keras_arrays(layer))
        for op, layer in zip(ops, layers, strict=True)
    ]
    load_torch_groups(torch_model, groups)


def expects_pixels(graph) -> bool:
    """Whether the network rescales its input (keras.applications' V3): it then
    expects pixel values in [0, 255] rather than normalised images."""
    return graph.node(graph.order[1])["kind"] == "rescale"


def random_images(graph, seed: int = 0, pixels: bool = False) -> np.ndarray:
    """A batch of 2 NCHW float32 images (pixel range [0, 255] when `pixels`)."""
    c, h, w = graph.shape("input")
    rng = np.random.default_rng(seed)
    if pixels:
        return rng.uniform(0, 255, size=(2, c, h, w)).astype(np.float32)
    return rng.standard_normal((2, c, h, w)).astype(np.float32)


def run_torch(model, images: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def run_keras(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model(images.transpose(0, 2, 3, 1), training=False))


def randomize_keras(model, images_nhwc: np.ndarray, seed: int = 0, graph=None) -> None:
    """Keras counterpart of `randomize_torch`: random kernels scaled by fan-in,
    random gamma/beta (and the other norms' vectors), and moving statistics
    measured on `images_nhwc`.

    With momentum 0 one training-mode call stores exactly that batch's statistics
    (Keras keeps the biased variance), which keeps every layer near unit scale.
    Given the model's `graph`, the Dense layers that mix CondConv kernels are
    scaled by the fan-in of the convolution they make, not by their experts.
    """
    import keras

    rng = np.random.default_rng(seed)
    momenta = {}
    conv_fan_in = {}  # Keras layer -> fan-in of the CondConv whose kernels it mixes
    if graph is not None:
        for op, name in zip(param_ops(graph), layer_names(graph), strict=True):
            if op.kind == "condconv":
                attrs = op.attrs
                fan_in = attrs["in_c"] // attrs["groups"] * attrs["kernel"] ** 2
                conv_fan_in[model.get_layer(name)] = fan_in
    for layer in keras_weighted_layers(model):
        arrays = keras_arrays(layer)
        if isinstance(layer, keras.layers.BatchNormalization):
            n = arrays[0].shape[0]
            gamma = rng.uniform(0.5, 1.5, n)
            beta = rng.standard_normal(n) * 0.1
            new = [gamma, beta, np.zeros(n), np.ones(n)]
            momenta[layer] = layer.momentum
            layer.momentum = 0.0
        elif is_other_keras_norm(layer):  # weight[, bias, EvoNorm's v]
            n = arrays[0].shape[0]
            new = [rng.uniform(0.5, 1.5, n)]
            if len(arrays) > 1:  # RMSNormalization has its scale alone
                new.append(rng.standard_normal(n) * 0.1)
                new += [rng.uniform(0.5, 1.5, n) for _ in arrays[2:]]
        else:
            kernel = arrays[0]
            # fan-in: every axis but the output one(s): (kh, kw, in, out) for conv,
            # (kh, kw, C, m) for depthwise (one input channel each), (in, out) dense.
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                fan_in = kernel.shape[0] * kernel.shape[1]
            elif layer in conv_fan_in:
                fan_in = conv_fan_in[layer]
            else:
                fan_in = int(np.prod(kernel.shape[:-1]))
            new = [rng.standard_normal(kernel.shape) / np.sqrt(fan_in)]
            new += [rng.standard_normal(a.shape) * 0.1 for a in arrays[1:]]
        layer.set_weights([a.astype(np.float32) for a in new])
    model(images_nhwc, training=True)
    for layer, momentum in momenta.items():
        layer.momentum = momentum


def is_other_keras_norm(layer) -> bool:
    """Keras' GroupNormalization, LayerNormalization and RMSNormalization, the
    generated EvoNormS0."""
    import keras

    norms = (
        keras.layers.GroupNormalization,
        keras.layers.LayerNormalization,
        keras.layers.RMSNormalization,
    )
    return isinstance(layer, norms) or type(layer).__name__ == "EvoNormS0"


def assert_ruff_clean(*paths: Path) -> None:
    """`ruff check` and `ruff format --check` pass with users' default configuration
    (--isolated: not this repository's settings)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    assert Path(ruff).exists(), "ruff is part of the test extras but was not found"
    targets = [str(p) for p in paths]
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [ruff, *command, "--isolated", *targets],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def xnnpack_partitions(interpreter) -> int:
    """How many pieces LiteRT's XNNPACK delegate (applied by default) runs the
    graph in: after delegation the interpreter lists one DELEGATE node per
    partition beside the model's own ops (its ops report, `_get_ops_details`)."""
    interpreter.allocate_tensors()
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    # The dynamic-batch reshape chain XNNPACK cannot take (it split the graph).
    assert not {"SHAPE", "PACK"} & set(ops), ops
    return ops.count("DELEGATE")
