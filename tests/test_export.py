"""Deployment: generated models export and run outside their framework's eager mode.

For every canonical spec, three timm specs (MobileNetV4-Conv-S, with universal
inverted bottlenecks; EfficientNet-B0, with SiLU and sigmoid-gated squeeze-excite;
MobileNetV4-Hybrid-M, with multi-query attention) and from `examples/` (when it
exists) the first model that returns one tensor and the first backbone that returns
named feature maps, with random weights (batch-norm statistics included) and random
inputs:

- PyTorch: `torch.export` (dynamic batch, saved and reloaded as .pt2), ONNX through
  the dynamo exporter run by onnxruntime, and `torch.jit.script` (saved and reloaded);
- Keras: `.keras` save and load, and TFLite conversion as `mbcompile export` makes it
  (formats.keras_to_tflite: a frozen function, its serving signature written in)
  run by the LiteRT interpreter.

Each exported artefact must reproduce the eager model's float32 outputs within
TOLERANCE, at a batch size other than the one it was exported with. Canonical
specs run at their 224x224; examples at most at EXAMPLE_RESOLUTION. No downloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest

from helpers import (
    CANONICAL,
    ROOT,
    SPECS,
    TOLERANCE,
    build,
    difference,
    expects_pixels,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    xnnpack_partitions,
)
from mbcompile import compiler
from mbcompile.export import formats

# Keras 3.15 converts tensors with np.array(x, copy=False) internally; NumPy 2 warns
# on every weight. Not ours to fix, and it would drown this file's log.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

# Examples export at most at this resolution: each spec costs 30-40 s on two busy
# cores at 224, and the canonical specs already cover 224 for every exporter.
EXAMPLE_RESOLUTION = 128

TIMM_EXPORTED = (
    "mobilenetv4_conv_small",
    "efficientnet_b0",
    "mobilenetv4_hybrid_medium",
)

# The key under which a model's single output tensor is compared.
SINGLE = "output"


def chosen_examples() -> list[tuple[Path, tuple[str, ...]]]:
    """The first example (by name) with one output tensor and the first with named
    feature outputs, with the overrides they are exported with."""
    chosen: dict[bool, tuple[Path, tuple[str, ...]]] = {}
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        loaded, graph = compiler.load_and_expand(path)
        overrides = ()
        if loaded.spec.resolution > EXAMPLE_RESOLUTION:
            overrides = (f"resolution={EXAMPLE_RESOLUTION}",)
        chosen.setdefault(bool(getattr(graph, "outputs", None)), (path, overrides))
    return [chosen[kind] for kind in (False, True) if kind in chosen]


EXAMPLES = chosen_examples()
TIMM = [(SPECS / "timm" / f"{name}.yaml", ()) for name in TIMM_EXPORTED]
CASES = [(SPECS / f"{name}.yaml", ()) for name in CANONICAL] + TIMM + EXAMPLES
CASE_IDS = [
    p.stem if p.parent == SPECS else f"{p.parent.name}/{p.stem}" for p, _ in CASES
]
# The default run exports a backbone with named feature outputs in every format;
# `pytest -m slow` exports the rest (the canonical specs at 224, the timm specs).
# Also in the default run: tests/test_export_command.py exports timm's
# mobilenetv4_conv_small to every format and the canonical v3_small to TFLite
# through `mbcompile export`, and tests/test_mobilenetv5.py a tiny MobileNetV5
# (Mobile MQA with downsampled keys and values, RMSNorm, the fusion neck) to ONNX,
# TorchScript, .keras and TFLite.
DEFAULT_CASES = ("examples/detection_backbone",)
CASE_PARAMS = [
    pytest.param(c, id=i, marks=() if i in DEFAULT_CASES else (pytest.mark.slow,))
    for c, i in zip(CASES, CASE_IDS, strict=True)
]

# Exported at batch 2 and checked at batches 2 and 3 (the batch dimension is dynamic).
OTHER_BATCH = 3


@dataclass
class Case:
    """One spec's generated models sharing random weights, each built on first use."""

    spec: Path
    overrides: tuple[str, ...]
    workdir: Path

    @cached_property
    def _torch(self):
        _, graph, model = build(self.spec, "torch", self.workdir, self.overrides)
        # Models that rescale their input expect pixels in [0, 255].
        pixels = expects_pixels(graph)
        randomize_torch(model, random_images(graph, seed=7, pixels=pixels), seed=7)
        return graph, model.eval(), pixels

    @property
    def graph(self):
        return self._torch[0]

    @property
    def torch_model(self):
        return self._torch[1]

    @cached_property
    def keras_model(self):
        _, _, model = build(self.spec, "keras", self.workdir, self.overrides)
        port_torch_to_keras(self.graph, self.torch_model, model)
        return model

    def images(self, batch: int) -> np.ndarray:
        """NCHW float32 inputs in the range the model expects."""
        _, _, pixels = self._torch
        shape = (batch, *self.graph.shape("input"))
        rng = np.random.default_rng(batch)
        if pixels:
            return rng.uniform(0, 255, size=shape).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module", params=CASE_PARAMS)
def case(request, tmp_path_factory) -> Case:
    spec, overrides = request.param
    return Case(spec, overrides, tmp_path_factory.mktemp(spec.stem))


def named(outputs) -> dict[str, np.ndarray]:
    """A model's outputs as {name: array}: a dict of feature maps, or one tensor."""
    if isinstance(outputs, dict):
        return {name: _array(value) for name, value in outputs.items()}
    return {SINGLE: _array(outputs)}


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    import keras

    return keras.ops.convert_to_numpy(value)


def assert_close(actual, expected, what: str) -> None:
    """Same names and shapes; each output within TOLERANCE (see `difference`)."""
    actual, expected = named(actual), named(expected)
    assert list(actual) == list(expected), (what, list(actual), list(expected))
    for name, reference in expected.items():
        label = what if name == SINGLE else f"{what} [{name}]"
        assert actual[name].shape == reference.shape, (label, actual[name].shape)
        # Outputs that are all ~0 would make the comparison meaningless.
        assert np.abs(reference).max() > 1e-2, f"{label}: outputs ~0"
        diff = difference(reference, actual[name])
        assert diff <= TOLERANCE, f"{label}: difference {diff:.3g}"


def test_specs_under_test():
    # Every canonical spec always; examples of both kinds as soon as they exist.
    assert [p.stem for p, _ in CASES[: len(CANONICAL)]] == list(CANONICAL)
    assert all(p.exists() for p, _ in CASES)
    if any((ROOT / "examples").glob("*.yaml")):
        assert EXAMPLES, "examples/ exists but none was chosen"


# ----------------------------------------------------------------------- PyTorch


def _torch_inputs(case):
    import torch

    return [torch.from_numpy(case.images(b)) for b in (2, OTHER_BATCH)]


def _eager(case, x):
    import torch

    with torch.no_grad():
        return named(case.torch_model(x))


def test_torch_export(case, tmp_path):
    """`torch.export` with a dynamic batch; the saved .pt2 reloads and agrees."""
    import torch

    traced, other = _torch_inputs(case)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        case.torch_model, (traced,), dynamic_shapes=({0: batch},)
    )
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    exported = program.module()
    reloaded = torch.export.load(path).module()
    with torch.no_grad():
        for x in (traced, other):
            expected = _eager(case, x)
            assert_close(exported(x), expected, "torch.export")
            assert_close(reloaded(x), expected, "torch.export .pt2 reloaded")


def test_onnx_runs_in_onnxruntime(case, tmp_path):
    """ONNX through the dynamo exporter (dynamic batch), checked and run by ORT."""
    import onnx
    import onnxruntime
    import torch

    traced, other = _torch_inputs(case)
    names = list(_eager(case, traced))
    output_names = ["logits"] if names == [SINGLE] else names
    path = tmp_path / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        case.torch_model,
        (traced,),
        dynamo=True,
        dynamic_shapes=({0: batch},),
        input_names=["images"],
        output_names=output_names,
    )
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == output_names
    for x in (traced, other):
        results = session.run(output_names, {"images": x.numpy()})
        got = dict(zip(names, results, strict=True))
        assert_close(got, _eager(case, x), "onnxruntime")


# TorchScript is deprecated in favour of torch.export, but still how many deployment
# targets (LibTorch, older mobile runtimes) take a model: it must keep working.
@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript(case, tmp_path):
    """`torch.jit.script` compiles the generated module; saved and reloaded agrees."""
    import torch

    try:
        scripted = torch.jit.script(case.torch_model)
    except Exception as exc:  # a message that says what broke and where to fix it
        pytest.fail(
            f"torch.jit.script cannot compile the generated module for "
            f"{case.spec.name}: {type(exc).__name__}: {exc}\n"
            "The fix belongs in templates/torch/ (TorchScript typing of the "
            "generated classes)."
        )
    path = tmp_path / "model.torchscript.pt"
    torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path))
    with torch.no_grad():
        for x in _torch_inputs(case):
            expected = _eager(case, x)
            assert_close(scripted(x), expected, "torch.jit.script")
            assert_close(reloaded(x), expected, "torch.jit.load")


# ----------------------------------------------------------------------- Keras


def _keras_inputs(case):
    return [case.images(b).transpose(0, 2, 3, 1) for b in (2, OTHER_BATCH)]


def _keras_eager(model, x: np.ndarray) -> dict[str, np.ndarray]:
    return named(model(x, training=False))


def test_keras_save_and_load(case, tmp_path):
    """The .keras file reloads (no custom objects needed) and computes the same."""
    import keras

    model = case.keras_model
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert [w.shape for w in reloaded.weights] == [w.shape for w in model.weights]
    for x in _keras_inputs(case):
        expected = _keras_eager(model, x)
        assert_close(_keras_eager(reloaded, x), expected, ".keras reloaded")
    # The Keras model carries the torch model's weights: both agree too.
    images = case.images(2)
    nhwc = _keras_eager(model, images.transpose(0, 2, 3, 1))
    nchw = {k: v.transpose(0, 3, 1, 2) if v.ndim == 4 else v for k, v in nhwc.items()}
    import torch

    assert_close(nchw, _eager(case, torch.from_numpy(images)), "keras vs torch")


def test_tflite_runs_in_litert(case):
    """float32 TFLite conversion, run by the LiteRT interpreter through its serving
    signature (outputs by name), matches Keras."""
    from ai_edge_litert.interpreter import Interpreter

    model = case.keras_model
    flatbuffer = formats.keras_to_tflite(model)
    interpreter = Interpreter(model_content=flatbuffer)
    assert xnnpack_partitions(interpreter) == 1
    assert all(d["dtype"] == np.float32 for d in interpreter.get_input_details())
    assert all(d["dtype"] == np.float32 for d in interpreter.get_output_details())
    signature = interpreter.get_signature_list()["serving_default"]
    (input_name,) = signature["inputs"]
    runner = interpreter.get_signature_runner()
    for x in _keras_inputs(case):
        expected = _keras_eager(model, x)
        results = runner(**{input_name: x})  # resizes to the batch as needed
        if list(expected) == [SINGLE]:
            (only,) = results.values()
            results = {SINGLE: only}
        got = {name: results[name] for name in expected if name in results}
        assert_close(got, expected, "LiteRT")


# Converting a model to TFLite by the traced route (keras_to_tflite's default)
# takes ~112 bytes of memory per parameter (export/memory.py): efficientnet_l2's
# 480M were killed at ~21 GiB at 64x64, and so was a run at 23 GiB holding
# efficientnetv2_xl's 208M and mobilenetv5_300m's 294M. These are converted here at
# width 0.5, the same ops, connections and depth with fewer channels, which do not
# decide what XNNPACK takes (`mbcompile export` takes the leaner SavedModel route
# for such models: test_export_command.py exports mobilenetv5_300m so, -m slow).
NARROWED = {
    "efficientnet_l2",
    "tf_efficientnet_l2",
    "efficientnetv2_xl",
    "tf_efficientnetv2_xl",
    "mobilenetv5_300m",
    "mobilenetv5_300m_enc",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    sorted(SPECS.glob("*.yaml"))
    + sorted(SPECS.glob("timm/*.yaml"))
    + sorted((ROOT / "examples").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_every_spec_is_one_xnnpack_partition(spec, tmp_path):
    """Every spec's float TFLite file runs whole in XNNPACK (at 64x64)."""
    import contextlib
    import io

    from ai_edge_litert.interpreter import Interpreter

    overrides = ["resolution=64"]
    if spec.stem in NARROWED:
        overrides.append("width_multiplier=0.5")
    _, _, model = build(spec, "keras", tmp_path, overrides)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter's chatter
        flatbuffer = formats.keras_to_tflite(model)
    assert xnnpack_partitions(Interpreter(model_content=flatbuffer)) == 1
