"""The runtimes `mbcompile bench` times, and how each gets a spec's model.

The table (`RUNTIMES`) is plain data the parent reads without importing anything.
The rest runs in the child process and imports its runtime's framework: the
generated source becomes a live model with random weights (batch-norm statistics
measured on a random batch, so activations keep a trained network's scale), is
exported as for deployment, and the exported model's call is checked against the
eager model before it is timed.

Export is the deployment path `mbcompile export` takes (Keras -> TFLite for LiteRT,
PyTorch -> ONNX with the dynamo exporter for ONNX Runtime); `exported_call` is the
one place that knows how: it calls the export formats' own producers
(mbcompile/export/formats.py), so what is timed is what `mbcompile export` writes.
"""

from __future__ import annotations

import contextlib
import itertools
import linecache
import math
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Runtime:
    backend: str  # the generated source it starts from: keras or torch
    modules: tuple[str, ...]  # what must be importable
    extras: tuple[str, ...]  # the pyproject extras that install them
    label: str


RUNTIMES = {
    "tflite": Runtime(
        "keras",
        ("tensorflow", "keras", "ai_edge_litert"),
        ("keras", "tflite"),
        "TFLite (LiteRT with XNNPACK), from the Keras model",
    ),
    "onnxruntime": Runtime(
        "torch",
        ("torch", "onnx", "onnxscript", "onnxruntime"),
        ("onnx",),
        "ONNX Runtime (CPU), from the PyTorch model (dynamo exporter)",
    ),
    "torch": Runtime("torch", ("torch",), ("torch",), "PyTorch eager"),
    "torch-compile": Runtime(
        "torch", ("torch",), ("torch",), "torch.compile (inductor)"
    ),
    "keras": Runtime(
        "keras", ("tensorflow", "keras"), ("keras",), "Keras (tf.function)"
    ),
}

# The suite's tolerance for outputs that agree (tests/helpers.py: TOLERANCE).
TOLERANCE = 1e-4


@dataclass
class Prepared:
    call: Callable[[], object]
    versions: dict[str, str]
    difference: float  # worst |exported - eager| / max(1, |eager|)
    notes: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # one-off costs


# ------------------------------------------------------------------ child side


_modules = itertools.count(1)


def module_from_source(source: str, stem: str) -> types.ModuleType:
    """Generated source executed as a fresh module (registered, so torch.compile,
    pickling and tracebacks can read it)."""
    name = f"mbcompile_bench_{stem}_{next(_modules)}"
    filename = f"<mbcompile: {name}>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def images(shape: tuple[int, ...], seed: int):
    import numpy as np

    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def difference(reference, other) -> float:
    import numpy as np

    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape:
        return math.inf
    scale = max(1.0, float(np.abs(reference).max()))
    return float(np.abs(reference - other).max()) / scale


def worst_difference(references: list, outputs: list) -> float:
    """Outputs matched to the eager ones by shape (feature taps differ in shape)."""
    import numpy as np

    pending = [np.asarray(o) for o in outputs]
    worst = 0.0
    for reference in references:
        reference = np.asarray(reference)
        match = next((o for o in pending if o.shape == reference.shape), None)
        if match is None:
            return math.inf
        pending = [o for o in pending if o is not match]
        worst = max(worst, difference(reference, match))
    return worst


def as_list(value) -> list:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@contextlib.contextmanager
def quiet_stdout():
    """Converters print progress to descriptor 1; it belongs to the results."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def prepare(
    runtime: str,
    source: str,
    input_shape: tuple[int, int, int],
    batch: int,
    threads: int,
    workdir: Path,
    timer: Callable[[str, Callable], object],
) -> Prepared:
    """The runtime's call on a random batch, checked against the eager model.
    `timer(label, fn)` runs a one-off step and records its time."""
    if RUNTIMES[runtime].backend == "keras":
        return _keras_family(
            runtime, source, input_shape, batch, threads, workdir, timer
        )
    return _torch_family(runtime, source, input_shape, batch, threads, workdir, timer)


# ----------------------------------------------------------------------- Keras


def _keras_family(
    runtime, source, input_shape, batch, threads, workdir, timer
) -> Prepared:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    c, h, w = input_shape
    model = timer("build", lambda: module_from_source(source, "keras").build_model())
    randomize_keras(model, images((2, h, w, c), 0))
    x = images((batch, h, w, c), 1)
    reference = [o.numpy() for o in as_list(model(tf.constant(x), training=False))]
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if runtime == "keras":
        tensor = tf.constant(x)
        graph = tf.function(lambda t: model(t, training=False))
        outputs = timer("trace", lambda: graph(tensor))
        diff = worst_difference(reference, [o.numpy() for o in as_list(outputs)])
        return Prepared(lambda: graph(tensor), versions, diff)
    return _tflite(model, x, reference, threads, workdir, versions, timer)


def exported_file(fmt: str, model, x, outputs: int, workdir: Path, timer) -> Path:
    """The file `mbcompile export --format FMT --batch N` makes of `model` (its
    producer, at x's batch; metadata reduced to what the format needs)."""
    import numpy as np

    from ..export import ExportOptions
    from ..export.formats import FORMATS, INPUT_NAME

    chosen = FORMATS[fmt]
    example = np.asarray(x)
    metadata = {
        "producer": "mbcompile bench",
        "input_name": INPUT_NAME[chosen.backend],
        "outputs": [f"output_{i}" for i in range(outputs)],
    }
    options = ExportOptions(batch=example.shape[0])
    with quiet_stdout():
        return timer(
            "export",
            lambda: chosen.produce(model, example, options, metadata, workdir),
        )


def exported_call(model, x, outputs: int, threads: int, workdir: Path, timer):
    """(call, notes, litert version): the TFLite file `mbcompile export` writes of
    the Keras model, run by LiteRT with its default XNNPACK delegate."""
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    path = exported_file("tflite", model, x, outputs, workdir, timer)
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    details = interpreter.get_output_details()
    ops = interpreter._get_ops_details()
    partitions = sum(op["op_name"] == "DELEGATE" for op in ops)

    def run():
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return [interpreter.get_tensor(o["index"]) for o in details]

    version = getattr(ai_edge_litert, "__version__", "?")
    return run, {"xnnpack_partitions": partitions, "ops": len(ops)}, version


def _tflite(model, x, reference, threads, workdir, versions, timer) -> Prepared:
    run, notes, version = exported_call(
        model, x, len(reference), threads, workdir, timer
    )
    diff = worst_difference(reference, timer("first call", run))
    return Prepared(run, {**versions, "ai_edge_litert": version}, diff, notes)


def randomize_keras(model, images_nhwc, seed: int = 0) -> None:
    """Random kernels scaled by fan-in, random gamma and beta, and moving
    statistics of `images_nhwc` (momentum 0 for one training call)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    momenta = {}
    for layer in model.layers:
        arrays = [np.asarray(w) for w in layer.get_weights()]
        if not arrays:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            n = arrays[0].shape[0]
            new = [rng.uniform(0.5, 1.5, n), rng.standard_normal(n) * 0.1]
            new += [np.zeros(n), np.ones(n)]
            momenta[layer] = layer.momentum
            layer.momentum = 0.0
        else:
            kernel = arrays[0]
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                fan_in = kernel.shape[0] * kernel.shape[1]
            else:
                fan_in = int(np.prod(kernel.shape[:-1]))
            new = [rng.standard_normal(kernel.shape) / np.sqrt(fan_in)]
            new += [rng.standard_normal(a.shape) * 0.1 for a in arrays[1:]]
        layer.set_weights([a.astype(np.float32) for a in new])
    model(images_nhwc, training=True)
    for layer, momentum in momenta.items():
        layer.momentum = momentum


# --------------------------------------------------------------------- PyTorch


def _torch_family(
    runtime, source, input_shape, batch, threads, workdir, timer
) -> Prepared:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before first use
        torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = timer("build", lambda: module_from_source(source, "torch").build_model())
    randomize_torch(model, images((2, *input_shape), 0))
    x = torch.from_numpy(images((batch, *input_shape), 1))
    with torch.inference_mode():
        reference = [o.numpy() for o in as_list(model(x))]
    versions = {"torch": torch.__version__}
    if runtime == "onnxruntime":
        return _onnxruntime(model, x, reference, threads, workdir, versions, timer)
    if runtime == "torch-compile":
        model = torch.compile(model, dynamic=False)

    def run():
        with torch.inference_mode():
            return model(x)

    first = timer("first call", run)
    diff = worst_difference(reference, [o.numpy() for o in as_list(first)])
    return Prepared(run, versions, diff)


def _onnxruntime(model, x, reference, threads, workdir, versions, timer):
    import onnxruntime as ort

    path = exported_file("onnx", model, x, len(reference), workdir, timer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )
    feed = {"images": x.numpy()}
    run = lambda: session.run(None, feed)  # noqa: E731
    diff = worst_difference(reference, timer("first call", run))
    return Prepared(run, {**versions, "onnxruntime": ort.__version__}, diff)


def randomize_torch(model, images, seed: int = 0) -> None:
    """The PyTorch counterpart of `randomize_keras`: kernels scaled by fan-in,
    random gamma and beta, layer scales in [0.5, 1.5), and batch-norm statistics
    measured on `images` (NCHW NumPy; a cumulative average over this one batch).

    Random running statistics would let activations grow block after block; ones
    measured on real activations keep every layer near unit scale, as in a trained
    network, and gamma and beta stay random, so no batch norm is an identity."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    momenta = {}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.reset_running_stats()
                momenta[module] = module.momentum
                module.momentum = None
                continue
            for name, p in module.named_parameters(recurse=False):
                if p.dim() > 1:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
                elif name == "bias":
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
                else:  # a layer scale
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        model.train()
        model(torch.as_tensor(images))
        model.eval()
    for module, momentum in momenta.items():
        module.momentum = momentum
