"""Deployment: generated models export and run outside their framework's eager mode.

For every canonical spec (and the first few `examples/*.yaml`, when that folder
exists) with random weights (batch-norm statistics included) and random inputs:

- PyTorch: `torch.export` (dynamic batch, saved and reloaded as .pt2), ONNX through
  the dynamo exporter run by onnxruntime, and `torch.jit.script` (saved and reloaded);
- Keras: `.keras` save and load, and TFLite conversion run by the LiteRT interpreter.

Each exported artefact must reproduce the eager model's float32 logits within
LOGIT_TOLERANCE, at a batch size other than the one it was traced with. No downloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest

from helpers import (
    CANONICAL,
    LOGIT_TOLERANCE,
    ROOT,
    SPECS,
    build,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    run_torch,
)
from mbcompile import compiler

# Keras 3.15 converts tensors with np.array(x, copy=False) internally; NumPy 2 warns
# on every weight. Not ours to fix, and it would drown this file's log.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

# Examples are covered when they exist; a bound on how many keeps this file's time
# predictable (each spec costs 30-40 s on two busy cores; CI's budget is shared).
MAX_EXAMPLES = 1


def single_output_examples(limit: int) -> list[Path]:
    """The first `limit` examples (by name) whose model returns one tensor.

    Backbones with named feature taps return a dict, which each exporter flattens
    its own way; the checks here compare one logits (or features) tensor.
    """
    chosen = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        _, graph = compiler.load_and_expand(path)
        if not getattr(graph, "outputs", None):
            chosen.append(path)
        if len(chosen) == limit:
            break
    return chosen


EXAMPLES = single_output_examples(MAX_EXAMPLES)
SPEC_PATHS = [SPECS / f"{name}.yaml" for name in CANONICAL] + EXAMPLES
SPEC_IDS = [p.stem if p.parent == SPECS else f"examples/{p.stem}" for p in SPEC_PATHS]

# Exported at batch 2 and checked at batches 2 and 3 (the batch dimension is dynamic).
OTHER_BATCH = 3


@dataclass
class Case:
    """One spec's generated models sharing random weights, each built on first use."""

    spec: Path
    workdir: Path

    @cached_property
    def _torch(self):
        _, graph, model = build(self.spec, "torch", self.workdir)
        # Models that rescale their input expect pixels in [0, 255].
        pixels = graph.node(graph.order[1])["kind"] == "rescale"
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
        _, _, model = build(self.spec, "keras", self.workdir)
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


@pytest.fixture(scope="module", params=SPEC_PATHS, ids=SPEC_IDS)
def case(request, tmp_path_factory) -> Case:
    return Case(request.param, tmp_path_factory.mktemp(request.param.stem))


def assert_close(actual, expected, what: str) -> None:
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    # Logits that are all ~0 would make the comparison meaningless.
    assert np.abs(expected).max() > 1e-2
    diff = float(np.abs(actual - expected).max())
    assert diff <= LOGIT_TOLERANCE, f"{what}: max abs logit difference {diff:.3g}"


def test_specs_under_test():
    # Every canonical spec always; an example as soon as examples/ has one to offer.
    assert [p.stem for p in SPEC_PATHS[: len(CANONICAL)]] == list(CANONICAL)
    assert all(p.exists() for p in SPEC_PATHS)
    if any((ROOT / "examples").glob("*.yaml")):
        assert EXAMPLES, "no example in examples/ has a single-tensor output"


# ----------------------------------------------------------------------- PyTorch


def _torch_inputs(case):
    import torch

    return [torch.from_numpy(case.images(b)) for b in (2, OTHER_BATCH)]


def test_torch_export(case, tmp_path):
    """`torch.export` with a dynamic batch; the saved .pt2 reloads and agrees."""
    import torch

    model = case.torch_model
    traced, other = _torch_inputs(case)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (traced,), dynamic_shapes=({0: batch},))
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    exported = program.module()
    reloaded = torch.export.load(path).module()
    with torch.no_grad():
        for x in (traced, other):
            expected = run_torch(model, x.numpy())
            assert_close(exported(x), expected, "torch.export")
            assert_close(reloaded(x), expected, "torch.export .pt2 reloaded")


def test_onnx_runs_in_onnxruntime(case, tmp_path):
    """ONNX through the dynamo exporter (dynamic batch), checked and run by ORT."""
    import onnx
    import onnxruntime
    import torch

    model = case.torch_model
    traced, other = _torch_inputs(case)
    path = tmp_path / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model,
        (traced,),
        dynamo=True,
        dynamic_shapes=({0: batch},),
        input_names=["images"],
        output_names=["logits"],
    )
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["images"]
    for x in (traced, other):
        (logits,) = session.run(["logits"], {"images": x.numpy()})
        assert_close(logits, run_torch(model, x.numpy()), "onnxruntime")


# TorchScript is deprecated in favour of torch.export, but still how many deployment
# targets (LibTorch, older mobile runtimes) take a model: it must keep working.
@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript(case, tmp_path):
    """`torch.jit.script` compiles the generated module; saved and reloaded agrees."""
    import torch

    model = case.torch_model
    try:
        scripted = torch.jit.script(model)
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
            expected = run_torch(model, x.numpy())
            assert_close(scripted(x), expected, "torch.jit.script")
            assert_close(reloaded(x), expected, "torch.jit.load")


# ----------------------------------------------------------------------- Keras


def _keras_inputs(case):
    return [case.images(b).transpose(0, 2, 3, 1) for b in (2, OTHER_BATCH)]


def _keras_logits(model, x: np.ndarray) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def test_keras_save_and_load(case, tmp_path):
    """The .keras file reloads (no custom objects needed) and computes the same."""
    import keras

    model = case.keras_model
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert [w.shape for w in reloaded.weights] == [w.shape for w in model.weights]
    for x in _keras_inputs(case):
        expected = _keras_logits(model, x)
        assert_close(_keras_logits(reloaded, x), expected, ".keras reloaded")
    # The Keras model carries the torch model's weights: both agree too.
    images = case.images(2)
    keras_logits = _keras_logits(model, images.transpose(0, 2, 3, 1))
    assert_close(keras_logits, run_torch(case.torch_model, images), "keras vs torch")


def test_tflite_runs_in_litert(case):
    """float32 TFLite conversion, run by the LiteRT interpreter, matches Keras."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = case.keras_model
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flatbuffer = converter.convert()
    interpreter = Interpreter(model_content=flatbuffer)
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    for x in _keras_inputs(case):
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        logits = interpreter.get_tensor(out["index"])
        assert_close(logits, _keras_logits(model, x), "LiteRT")
