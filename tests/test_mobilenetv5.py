"""MobileNetV5 (timm's mobilenetv5.py; Gemma 3n's image encoder) from specs.

- The three specs `specs/timm/mobilenetv5_base.yaml`, `mobilenetv5_300m.yaml` and
  `mobilenetv5_300m_enc.yaml` against timm's own models: trainable parameters,
  MACs at the spec's resolution (768 for the 300M ones; timm's counted by forward
  hooks), state_dict keys in order and shapes, strict load — all on the meta
  device, so the 300M models' 1.2 GB of float32 are never allocated — and
  mobilenetv5_base's logits at BASE_RESOLUTION in PyTorch and, given timm's
  weights by `mbcompile weights`, in Keras (random weights, RMSNorm weights
  randomised too).
- A tiny MobileNetV5 (tests/specs/mobilenetv5_tiny.yaml: every part once) against
  the same network built by timm's MobileNetV5 class from arch strings written
  here (parameters, MACs as timm's own count, logits in both frameworks) at the
  resolutions where the fusion neck pools its map and where it shrinks it
  bilinearly; and through the exporters (ONNX run by onnxruntime, TorchScript,
  .keras, TFLite run by LiteRT).
- Units: RMSNorm and GELU-tanh against timm's modules and the formulas; the Gemma
  3n checkpoint layout; the neck's spec errors.

The Keras model of the tiny spec runs on Keras' three backends in
tests/test_keras_backends.py (one of its cases, sharing its three processes). The
300M encoder at 768x768 with real (random) weights in both frameworks, its latency
and the base model's export are on demand: `python benchmarks/mobilenetv5.py`
(minutes and several GB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import (
    ROOT,
    SPECS,
    TOLERANCE,
    build,
    difference,
    import_source,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    run_cli,
    run_keras,
    run_torch,
)
from mbcompile import compiler
from mbcompile.analysis.cost import node_cost
from mbcompile.backends.weights import param_ops
from mbcompile.checkpoints.key_layouts import GEMMA3N_VISION_PREFIX, gemma3n_vision
from mbcompile.export import formats
from mbcompile.frontend import conventions
from mbcompile.ir.graph import Graph
from mbcompile.ir.norms import NORM_MODELS, NORM_TYPES, Norm
from reference_models import count_macs, create, import_timm

MODELS = ("mobilenetv5_base", "mobilenetv5_300m", "mobilenetv5_300m_enc")
TINY = ROOT / "tests" / "specs" / "mobilenetv5_tiny.yaml"
# mobilenetv5_base's logits are compared at this resolution (its own is 256): 16x
# fewer MACs, and the neck enlarges its 4x4 map to 16x16 bilinearly.
BASE_RESOLUTION = 64
# The tiny spec as timm's arch strings (timm/models/mobilenetv5.py's notation).
TINY_ARCH = [
    ["er_r1_k3_s2_e4_c16"],
    ["uir_r1_a3_k5_s2_e4_c24", "uir_r1_a5_k0_s1_e2_c24"],
    [
        "uir_r1_a5_k5_s2_e4_c32",
        "mqa_r1_k3_h4_v2_s1_d8_c32",
        "uir_r1_a0_k0_s1_e2_c32",
    ],
    [
        "uir_r1_a5_k5_s2_e4_c48",
        "mqa_r1_k3_h4_s1_d12_c48",
        "uir_r1_a0_k0_s1_e2_c48",
    ],
]
# Resolution -> what the neck does with its largest map (tiny: 1/16 of the input)
# to reach its 4x4 output: pool it 2x2 at 128, resize it bilinearly at 96;
# mobilenetv5_base at BASE_RESOLUTION enlarges its map.
TINY_NECK = {128: "pool", 96: "bilinear"}


def spec_path(name: str) -> Path:
    return SPECS / "timm" / f"{name}.yaml"


def tiny_timm():
    """The tiny spec's network as timm builds it: its MobileNetV5 class with
    MobileNetV5's settings (RMSNorm, GELU-tanh, layer scale 1e-5, a stem bias)."""
    import_timm()
    from functools import partial

    from timm.layers import RmsNorm2d
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.mobilenetv5 import MobileNetV5
    from torch import nn

    model = MobileNetV5(
        decode_arch_def(TINY_ARCH),
        num_classes=10,
        stem_size=16,
        num_features=64,
        msfa_output_resolution=4,
        norm_layer=RmsNorm2d,
        act_layer=partial(nn.GELU, approximate="tanh"),
        layer_scale_init_value=1e-5,
    )
    return model.eval()


def torch_module(spec, tmp_path, overrides=()):
    """(graph, generated PyTorch module) of a spec."""
    _, graph = compiler.load_and_expand(spec, overrides)
    return graph, import_source(compiler.generate(graph, "torch"), tmp_path, "torch")


def tiny_graph():
    return compiler.load_and_expand(TINY)[1]


def tiny_module(backend: str, tmp_path):
    """The tiny spec's generated module (its helpers: RmsNormAct, gelu_tanh, ...)."""
    return import_source(compiler.generate(tiny_graph(), backend), tmp_path, backend)


# ------------------------------------------------------------- the three models


@pytest.mark.parametrize("name", MODELS)
def test_structure_equals_timm(name, tmp_path):
    """Parameters, MACs at the spec's resolution (timm's counted by forward hooks
    on its modules, shapes only), keys in order, shapes and a strict load, on the
    meta device."""
    import torch

    graph, module = torch_module(spec_path(name), tmp_path)
    with torch.device("meta"):
        reference = create(name)
        ours = module.build_model()
    theirs = reference.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert [t.shape for t in ours.state_dict().values()] == [
        t.shape for t in theirs.values()
    ]
    ours.load_state_dict(theirs, strict=True, assign=True)
    counted = sum(p.numel() for p in reference.parameters())
    report = compiler.cost_report(graph)
    assert report.trainable_params == counted
    assert sum(p.numel() for p in ours.parameters()) == counted
    assert report.macs == count_macs(reference, graph.network.resolution)


def test_300m_is_gemma3ns_encoder():
    """294M parameters; a 768x768 image to a 16x16 map of 2048 channels (the
    encoder) or its pooled vector (the classifier class with num_classes 0)."""
    _, encoder = compiler.load_and_expand(spec_path("mobilenetv5_300m_enc"))
    _, pooled = compiler.load_and_expand(spec_path("mobilenetv5_300m"))
    assert compiler.cost_report(encoder).trainable_params == 294_126_912
    assert encoder.shape("input") == (3, 768, 768)
    assert encoder.shape(encoder.output) == (2048, 16, 16)
    assert pooled.shape(pooled.output) == (2048,)
    # timm builds the encoder with TensorFlow's SAME padding: the stem pads the
    # bottom and right only (768 -> 384 with a 3x3 stride-2 conv)
    stem = encoder.blocks[0].params.conv
    assert stem.pad == (0, 1, 0, 1)
    assert pooled.blocks[0].params.conv.pad == (1, 1, 1, 1)


def test_base_logits_equal_timm(tmp_path, worst_differences):
    """timm's mobilenetv5_base with random weights (RMSNorm weights too): its
    state_dict gives its logits in the generated PyTorch model and, converted by
    `mbcompile weights`, in the Keras one. Both PyTorch models start on the meta
    device: every tensor is filled by randomize_torch or load_state_dict, so their
    own initialisation (82M values each) would be drawn for nothing."""
    import torch

    overrides = [f"resolution={BASE_RESOLUTION}"]
    spec = spec_path("mobilenetv5_base")
    graph, module = torch_module(spec, tmp_path, overrides)
    with torch.device("meta"):
        reference, ours = create("mobilenetv5_base"), module.build_model()
    reference.to_empty(device="cpu")
    calibration = random_images(graph, seed=7)
    randomize_torch(reference, calibration, seed=7)
    state = reference.state_dict()
    ours.to_empty(device="cpu").load_state_dict(state, strict=True)
    images = random_images(graph, seed=1)
    want = run_torch(reference, images)
    diff = difference(want, run_torch(ours, images))
    worst_differences.append((f"mobilenetv5_base r{BASE_RESOLUTION} torch", diff))
    assert diff <= TOLERANCE, diff

    weights, keras_weights = tmp_path / "base.pt", tmp_path / "base.weights.h5"
    torch.save(state, weights)
    argv = ["weights", spec, "--set", overrides[0], "--from", weights]
    assert run_cli([*argv, "--to", keras_weights])[0] == 0
    _, _, keras_model = build(spec, "keras", tmp_path, overrides)
    keras_model.load_weights(keras_weights)
    diff = difference(want, run_keras(keras_model, images))
    worst_differences.append((f"mobilenetv5_base r{BASE_RESOLUTION} keras", diff))
    assert diff <= TOLERANCE, diff


# ------------------------------------------------------------------ tiny network


@pytest.mark.parametrize("resolution", list(TINY_NECK))
def test_tiny_equals_timm(resolution, tmp_path, worst_differences):
    """The tiny spec computes timm's logits in both frameworks, whatever the neck
    does to reach its output resolution."""
    reference = tiny_timm()
    shape = (2, 3, resolution, resolution)
    calibration = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    randomize_torch(reference, calibration, seed=7)
    overrides = [f"resolution={resolution}"]
    _, graph, ours = build(TINY, "torch", tmp_path, overrides)
    neck = next(b.params for b in graph.blocks if b.role == "neck")
    done = "pool" if neck.pool > 1 else ("bilinear" if neck.size else "none")
    assert done == TINY_NECK[resolution]
    report = compiler.cost_report(graph)
    assert report.trainable_params == sum(p.numel() for p in reference.parameters())
    assert report.macs == count_macs(reference, resolution)
    state = reference.state_dict()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state, strict=True)
    images = random_images(graph, seed=1)
    want = run_torch(reference, images)
    assert np.abs(want).max() > 0.1  # not a comparison of zeros
    diff = difference(want, run_torch(ours, images))
    worst_differences.append((f"mobilenetv5_tiny r{resolution} torch", diff))
    assert diff <= TOLERANCE, diff
    _, _, keras_model = build(TINY, "keras", tmp_path, overrides)
    port_torch_to_keras(graph, ours, keras_model)
    diff = difference(want, run_keras(keras_model, images))
    worst_differences.append((f"mobilenetv5_tiny r{resolution} keras", diff))
    assert diff <= TOLERANCE, diff


# ------------------------------------------------------------------------- units


def test_rms_norm_layout_and_costs_by_hand():
    """One vector of weights per RMSNorm (16 channels: 16 parameters, no running
    statistics), the same in both frameworks; 4 elementwise ops per element (the
    square, the sum over channels, the scaling by 1/rms and by the weight), which
    fvcore does not count."""
    graph = Graph()
    x = graph.add("input", [], "input", shape=(16, 4, 4))
    settings = NORM_MODELS["rms_norm"].model_validate({"type": "rms_norm"})
    profile = conventions.resolve("timm", "v5", {})
    node = graph.add_norm(Norm(NORM_TYPES["rms_norm"], settings, profile), x, "norm")
    assert graph.node(node)["attrs"] == {"channels": 16, "eps": 1e-6}
    (op,) = param_ops(graph)
    assert op.torch_shapes == op.keras_shapes == ((16,),)
    cost = node_cost(graph, node)
    assert (cost.params, cost.bn_stats, cost.bn_ops) == (16, 0, 0)
    assert (cost.elementwise_ops, cost.macs) == (4 * 16 * 4 * 4, 0)


def test_rms_norm_is_timms(tmp_path):
    """The generated RmsNormAct is timm's RmsNorm2d / RmsNormAct2d, Keras'
    RMSNormalization (the generated rms_norm) the formula, on channels-last maps;
    both start with weights of one, as timm's."""
    from functools import partial

    import torch
    from keras import ops

    timm = import_timm()
    module = tiny_module("torch", tmp_path)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 24, 5, 7)) * 3).astype(np.float32)
    weight = rng.uniform(0.5, 1.5, 24).astype(np.float32)
    ours, plain = module.RmsNormAct(24, "gelu_tanh"), module.RmsNormAct(24)
    assert (ours.weight == 1).all()
    gelu_tanh = partial(torch.nn.GELU, approximate="tanh")
    theirs = timm.layers.RmsNormAct2d(24, act_layer=gelu_tanh)
    bare = timm.layers.RmsNorm2d(24)
    with torch.no_grad():
        for layer in (ours, plain, theirs, bare):
            layer.weight.copy_(torch.from_numpy(weight))
        t = torch.from_numpy(x)
        assert torch.equal(ours(t), theirs(t))
        assert torch.equal(plain(t), bare(t))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert module.NORM_EPS == bare.eps == 1e-6

    expected = x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-6)
    expected *= weight.reshape(1, -1, 1, 1)
    assert difference(expected, plain(t).detach().numpy()) <= 1e-6
    layer = tiny_module("keras", tmp_path).rms_norm("norm")
    layer.build((None, 5, 7, 24))
    assert (layer.get_weights()[0] == 1).all()
    layer.set_weights([weight])
    got = ops.convert_to_numpy(layer(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert difference(expected, got) <= 1e-6


def test_gelu_tanh_is_the_tanh_approximation(tmp_path):
    """`gelu_tanh` is 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) in both
    frameworks (timm's nn.GELU(approximate='tanh')); `gelu` is the exact erf form,
    which differs by more than the tolerance, so a swap would be caught."""
    import math

    import torch
    from keras import ops

    x = np.linspace(-6, 6, 2001)
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf_form = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    assert np.abs(tanh_form - erf_form).max() > 4 * TOLERANCE

    gelu = tiny_module("torch", tmp_path).ACTIVATIONS["gelu_tanh"]()
    with torch.no_grad():
        got = gelu(torch.from_numpy(x).float()).numpy()
    assert difference(tanh_form, got) <= 1e-6
    gelu = tiny_module("keras", tmp_path).gelu_tanh
    got = ops.convert_to_numpy(gelu(x.astype(np.float32)))
    assert difference(tanh_form, got) <= 1e-6


def test_gemma3n_checkpoint_layout(tmp_path):
    """A Gemma 3n checkpoint — the encoder under model.vision_tower.timm_model.,
    beside other towers — loads as timm's checkpoint_filter_fn reads it: into the
    Keras model through `mbcompile weights`, tensor for tensor."""
    import torch

    reference = tiny_timm()
    graph = tiny_graph()
    randomize_torch(reference, random_images(graph, seed=7), seed=7)
    state = reference.state_dict()
    gemma = {"model.language_model.embed_tokens.weight": torch.ones(4, 2)}
    gemma |= {GEMMA3N_VISION_PREFIX + key: value for key, value in state.items()}
    gemma["model.audio_tower.step"] = torch.tensor(3)  # not float: never read
    assert gemma3n_vision(gemma) == {GEMMA3N_VISION_PREFIX + key: key for key in state}
    assert gemma3n_vision(state) is None  # timm's own layout: as it is
    assert gemma3n_vision(["conv_stem.conv.weight", "model.x"]) is None

    source, target = tmp_path / "gemma3n.pt", tmp_path / "tiny.weights.h5"
    torch.save(gemma, source)
    assert run_cli(["weights", TINY, "--from", source, "--to", target])[0] == 0
    _, _, ours = build(TINY, "keras", tmp_path)
    ours.load_weights(target)
    images = random_images(graph, seed=1)
    diff = difference(run_torch(reference, images), run_keras(ours, images))
    assert diff <= TOLERANCE, diff


def tiny_line(key: str) -> str:
    """`mobilenetv5_tiny.yaml:<line>` of a top-level key of the tiny spec."""
    lines = TINY.read_text().splitlines()
    return f"tiny.yaml:{next(i for i, x in enumerate(lines, 1) if x.startswith(key))}"


# (what a spec extending the tiny one changes, the file and line blamed, the field,
# a fragment of the message)
SPEC_ERRORS = [
    # RMSNorm, computed from each input, has nothing to fold into a convolution
    ("fold_batch_norm: true", "neck.yaml:2", "fold_batch_norm", "rms_norm, computed"),
    ("conventions: torchvision", tiny_line("norm:"), "norm", "built as timm builds"),
    ("msfa: {stages: [3, -1]}", "neck.yaml:2", "msfa.stages", "distinct and in order"),
    ("msfa: {stages: [1, 2]}", "neck.yaml:2", "msfa.stages", "stage (3) must feed"),
    ("msfa: {stages: [-5, -1]}", "neck.yaml:2", "msfa.stages", "no stage -5"),
    # at 80 stages 2 and 3 end at 5x5 and 3x3: the neck's stages, in the tiny spec
    (
        "resolution: 80",
        tiny_line("msfa:"),
        "msfa.stages",
        "3x3 map is not a whole",
    ),
    ("head: {conv: {c: 64}}", "neck.yaml:2", "head", "head conv and msfa exclude"),
    (
        "include_top: false\nfeatures: each_stride",
        tiny_line("msfa:"),
        "msfa",
        "exclude",
    ),
]


@pytest.mark.parametrize("change,where,field,fragment", SPEC_ERRORS)
def test_spec_errors_are_located(change, where, field, fragment, tmp_path):
    """A neck that cannot be built, RMSNorm where it cannot be: one line naming the
    file, line and field, exit code 2, nothing written."""
    spec, out = tmp_path / "neck.yaml", tmp_path / "out.py"
    spec.write_text(f"extends: {TINY}\n{change}\n")
    code, _, err = run_cli([spec, "--backend", "torch", "-o", out])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{where}: {field}: " in err and fragment in err, err
    assert not out.exists()


# ---------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """The tiny spec's generated models at 128 (the neck pools) sharing random
    weights, and a batch of images."""
    workdir = tmp_path_factory.mktemp("tiny_export")
    _, graph, torch_model = build(TINY, "torch", workdir)
    randomize_torch(torch_model, random_images(graph, seed=7), seed=7)
    _, _, keras_model = build(TINY, "keras", workdir)
    port_torch_to_keras(graph, torch_model, keras_model)
    return torch_model.eval(), keras_model, random_images(graph, seed=3)


def test_tiny_exports_from_pytorch(tiny_models, tmp_path):
    """ONNX (the dynamo exporter, run by onnxruntime) and TorchScript agree with
    the eager model."""
    import onnxruntime
    import torch

    model, _, images = tiny_models
    x = torch.from_numpy(images)
    want = run_torch(model, images)
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, (x,), dynamo=True, input_names=["images"]).save(str(path))
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, {"images": images})
    assert difference(want, got) <= TOLERANCE
    with torch.no_grad():
        scripted = torch.jit.script(model)(x).numpy()
    assert difference(want, scripted) <= TOLERANCE


def test_tiny_exports_from_keras(tiny_models, tmp_path):
    """The .keras file reloads (GELU-tanh is registered when the generated module
    is imported) and the float32 TFLite model (as `mbcompile export` converts it),
    run by LiteRT, agrees."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    _, model, images = tiny_models
    nhwc = images.transpose(0, 2, 3, 1)
    want = np.asarray(model(nhwc, training=False))
    model.save(tmp_path / "tiny.keras")
    reloaded = keras.models.load_model(tmp_path / "tiny.keras")
    assert difference(want, np.asarray(reloaded(nhwc, training=False))) <= TOLERANCE
    flatbuffer = formats.keras_to_tflite(model)
    interpreter = Interpreter(model_content=flatbuffer)
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    (got,) = interpreter.get_signature_runner()(**{name: nhwc}).values()
    assert difference(want, got) <= TOLERANCE
