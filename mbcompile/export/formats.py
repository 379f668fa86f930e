"""The deployment formats: how each is made from a live model, where its metadata
goes, and how its own runtime runs it.

A `Format` names the generated model it starts from (`backend`: torch or keras),
the modules it needs and the extra that installs them, whether its batch size can
stay dynamic, whether it quantizes to int8. Its three functions:
- `produce(model, example, options, metadata, scratch)`: the exported file (or
  folder) in `scratch`, metadata embedded in the format's own fields;
- `load(path)`: a callable running the file in the format's runtime on a batch of
  float32 images in the format's layout, returning the outputs by name;
- `read_metadata(path)`: the metadata as the file carries it (for the report).

Frameworks are imported inside these functions only.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = {"torch": "images", "keras": "input"}
LAYOUT = {"torch": "NCHW", "keras": "NHWC"}
METADATA_KEY = "mbcompile"  # the name of the metadata entry in each format
MAX_BATCH = 1024  # the largest batch a dynamic batch dimension is exported for


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # "" for a folder
    backend: str  # the generated model exported: "torch" or "keras"
    runtime: str  # what runs the exported file, for messages
    modules: tuple[str, ...]
    extra: str  # pip install 'mbcompile[<extra>]'
    dynamic_batch: bool
    int8: bool
    where: str  # the metadata's home in the format, for the report
    produce: Callable[..., Path]
    load: Callable[[Path], Callable[[np.ndarray], dict[str, np.ndarray]]]
    read_metadata: Callable[[Path], dict[str, Any]]

    @property
    def layout(self) -> str:
        return LAYOUT[self.backend]


# ----------------------------------------------------------------------- ONNX


def _onnx_produce(model, example, options, metadata, scratch: Path) -> Path:
    import onnx
    import torch

    names = list(metadata["outputs"])
    dynamic = None
    if options.batch is None:
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        dynamic = ({0: batch},)
    program = torch.onnx.export(
        model,
        (torch.from_numpy(example),),
        dynamo=True,
        dynamic_shapes=dynamic,
        input_names=[metadata["input_name"]],
        output_names=names,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in sorted(_flat(metadata).items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "mbcompile"
    path = scratch / "model.onnx"
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _onnx_load(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    (feed,) = [i.name for i in session.get_inputs()]
    names = [o.name for o in session.get_outputs()]

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {feed: images}), strict=True))

    return run


def _onnx_metadata(path: Path) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return _unflat({p.key: p.value for p in proto.metadata_props})


# --------------------------------------------------------------- torch.export


def _pt2_produce(model, example, options, metadata, scratch: Path) -> Path:
    import torch

    dynamic = None
    if options.batch is None:
        dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    program = torch.export.export(
        model, (torch.from_numpy(example),), dynamic_shapes=dynamic
    )
    # Archived in memory, then written by Python: torch's own file writer, refused a
    # write (a full disk, `ulimit -f`), raises and then aborts the process from a
    # destructor; Python's write raises an OSError, reported as such.
    archive = io.BytesIO()
    torch.export.save(
        program, archive, extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)}
    )
    path = scratch / "model.pt2"
    path.write_bytes(archive.getbuffer())
    return path


def _pt2_load(path: Path):
    import torch

    module = torch.export.load(path).module()
    return _torch_runner(module)


def _torch_runner(module):
    import torch

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return named(module(torch.from_numpy(images)))

    return run


def _pt2_metadata(path: Path) -> dict[str, Any]:
    import torch

    extra = {f"{METADATA_KEY}.json": ""}
    torch.export.load(path, extra_files=extra)
    return json.loads(extra[f"{METADATA_KEY}.json"] or "{}")


# ------------------------------------------------------- ExecuTorch (XNNPACK)


def _executorch_produce(model, example, options, metadata, scratch: Path) -> Path:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    inputs = (torch.from_numpy(example),)
    if options.int8:
        model = _pt2e_int8(model, inputs, options.calibration_nchw)
    program = torch.export.export(model, inputs)
    text = json.dumps(metadata).encode("utf-8")
    lowered = to_edge_transform_and_lower(
        program,
        partitioner=[XnnpackPartitioner()],
        constant_methods={
            f"{METADATA_KEY}_metadata": torch.tensor(list(text), dtype=torch.uint8)
        },
    )
    path = scratch / "model.pte"
    path.write_bytes(lowered.to_executorch().buffer)
    return path


def _pt2e_int8(model, inputs, calibration: np.ndarray):
    """PT2E post-training static quantization with XNNPACK's quantizer (symmetric,
    per channel), calibrated on `calibration` in batches of the example's size."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    prepared = prepare_pt2e(torch.export.export(model, inputs).module(), quantizer)
    batch = inputs[0].shape[0]
    with torch.no_grad():
        for start in range(0, len(calibration) - batch + 1, batch):
            prepared(torch.from_numpy(calibration[start : start + batch]))
    return convert_pt2e(prepared)


def _executorch_load(path: Path):
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = method.execute([torch.from_numpy(np.ascontiguousarray(images))])
        return named(outputs[0] if len(outputs) == 1 else list(outputs))

    return run


def _executorch_metadata(path: Path) -> dict[str, Any]:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    method = program.load_method(f"{METADATA_KEY}_metadata")
    (tensor,) = method.execute([])
    return json.loads(bytes(tensor.numpy().tolist()).decode("utf-8"))


# ---------------------------------------------------------------------- Keras


def _keras_produce(model, example, options, metadata, scratch: Path) -> Path:
    path = scratch / "model.keras"
    model.save(path)
    _add_to_zip_json(path, "metadata.json", {METADATA_KEY: metadata})
    return path


def _add_to_zip_json(path: Path, member: str, entries: dict[str, Any]) -> None:
    """Add `entries` to the JSON file `member` of a zip archive (rewritten)."""
    with zipfile.ZipFile(path) as archive:
        contents = {info: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in contents.items():
            if info.filename == member:
                data = json.dumps({**json.loads(data), **entries}, indent=2).encode()
            archive.writestr(info, data)


def _keras_load(path: Path):
    import keras

    model = keras.models.load_model(path)

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return named(model(images, training=False))

    return run


def _keras_metadata(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("metadata.json")).get(METADATA_KEY, {})


# ---------------------------------------------------------------- SavedModel


def _savedmodel_produce(model, example, options, metadata, scratch: Path) -> Path:
    import tensorflow as tf

    path = scratch / "saved_model"
    shape = (options.batch, *example.shape[1:])
    spec = tf.TensorSpec(shape, tf.float32, name=metadata["input_name"])
    model.export(path, format="tf_saved_model", input_signature=[spec], verbose=False)
    extra = path / "assets.extra"  # SavedModel's place for files beside the graph
    extra.mkdir()
    (extra / f"{METADATA_KEY}.json").write_text(json.dumps(metadata, indent=2))
    return path


def _savedmodel_load(path: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = serve(tf.constant(images))
        if len(outputs) == 1:
            (value,) = outputs.values()
            return named(value.numpy())
        return {k: v.numpy() for k, v in outputs.items()}

    return run


def _savedmodel_metadata(path: Path) -> dict[str, Any]:
    return json.loads((path / "assets.extra" / f"{METADATA_KEY}.json").read_text())


# ---------------------------------------------------------- TFLite (LiteRT)


def _tflite_produce(model, example, options, metadata, scratch: Path) -> Path:
    import keras

    if options.batch is not None:  # the same layers behind an input of fixed batch
        inputs = keras.Input(
            batch_shape=(options.batch, *example.shape[1:]),
            name=metadata["input_name"],
        )
        model = keras.Model(inputs, model(inputs))
    flatbuffer = keras_to_tflite(
        model,
        calibration=options.calibration_nhwc if options.int8 else None,
        batch=1 if options.batch is None else options.batch,
        metadata=metadata,
        route=options.route,
    )
    path = scratch / "model.tflite"
    path.write_bytes(flatbuffer)
    return path


def keras_to_tflite(
    model,
    *,
    calibration: np.ndarray | None = None,
    batch: int = 1,
    metadata: dict[str, Any] | None = None,
    route: str = "traced",
) -> bytes:
    """A Keras model's inference call as a TFLite flatbuffer with its serving
    signature (what `mbcompile export --format tflite` writes): float32, or full
    integer (int8 weights, activations, input and output) calibrated on the NHWC
    images `calibration` in batches of `batch`; `metadata` as a JSON entry named
    METADATA_KEY in the flatbuffer's metadata table. `route` (export.memory.ROUTES):
    "traced" converts the call traced once, its variables folded into constants;
    "savedmodel" lets TensorFlow write a SavedModel and convert that: 1.5x the time,
    two thirds of the memory, the same ops and outputs."""
    import tensorflow as tf

    if route == "traced":
        function, signature = _frozen_inference(model)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    else:  # the SavedModel's serving signature, which the converter keeps
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        signature = None
    if calibration is not None:

        def representative():
            for start in range(0, len(calibration) - batch + 1, batch):
                yield [calibration[start : start + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return _with_signature_and_metadata(converter.convert(), signature, metadata)


def _frozen_inference(model):
    """The model's inference call (training=False) traced once for its input's
    shape, its variables folded into constants; and the names of its input and of
    its outputs, in the order the converter gives them. (TensorFlow's
    `from_keras_model` writes a SavedModel of a Keras 3 model and converts that,
    tracing the model three times and every variable's save and restore functions:
    18 s for mobilenetv4_conv_small at 64x64 where this takes 6 s, for the same
    flatbuffer ops and outputs.)"""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    (spec,) = [tf.TensorSpec(x.shape, dtype=x.dtype, name=x.name) for x in model.inputs]
    call = tf.function(
        functools.partial(model.__call__, training=False),
        input_signature=[spec],
        autograph=False,
    )
    concrete = call.get_concrete_function()
    structure = concrete.structured_outputs
    if isinstance(structure, dict):  # flattened in the order of the sorted keys
        outputs = sorted(structure)
    else:  # named as a SavedModel's serving signature names them
        outputs = [f"output_{i}" for i in range(len(tf.nest.flatten(structure)))]
    return convert_variables_to_constants_v2(concrete), (spec.name, outputs)


def _with_signature_and_metadata(
    flatbuffer: bytes,
    signature: tuple[str, list[str]] | None,
    metadata: dict[str, Any] | None,
) -> bytes:
    """The model with its serving signature (`serving_default`: the input and the
    outputs by name, for LiteRT's signature runner; a converter given a function
    rather than a SavedModel writes none; None: keep the converter's) and, given
    `metadata`, an entry named METADATA_KEY holding it as JSON (the flatbuffer's
    own name -> buffer table, beside the converter's entries)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    if signature is None and metadata is None:
        return flatbuffer
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    if signature is not None:
        model.signatureDefs = [_serving_signature(model, signature)]
    if metadata is None:
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata).encode("utf-8"))
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _serving_signature(model, signature: tuple[str, list[str]]):
    from tensorflow.lite.python import schema_py_generated as schema

    (graph,) = model.subgraphs

    def tensor_map(name: str, index: int):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    input_name, outputs = signature
    (input_index,) = graph.inputs
    serving = schema.SignatureDefT()
    serving.signatureKey = "serving_default"
    serving.subgraphIndex = 0
    serving.inputs = [tensor_map(input_name, int(input_index))]
    serving.outputs = [
        tensor_map(name, int(index))
        for name, index in zip(outputs, graph.outputs, strict=True)
    ]
    return serving


def _tflite_load(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    (input_name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    (detail,) = runner.get_input_details().values()
    outputs = runner.get_output_details()

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        feed = images
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            feed = np.clip(np.round(images / scale + zero), -128, 127).astype(np.int8)
        results = runner(**{input_name: feed})
        out = {}
        for name, value in results.items():
            scale, zero = outputs[name]["quantization"]
            if value.dtype == np.int8:
                value = (value.astype(np.float32) - zero) * scale
            out[name] = value
        return named(next(iter(out.values()))) if len(out) == 1 else out

    return run


def _tflite_metadata(path: Path) -> dict[str, Any]:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_KEY:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode("utf-8"))
    return {}


# ----------------------------------------------------------------- shared


SINGLE = "logits"  # the name of a model's one output


def named(outputs) -> dict[str, np.ndarray]:
    """A model's outputs as {name: float32 array}: its feature maps by name, or
    one tensor as "logits"."""
    if isinstance(outputs, dict):
        return {str(k): _array(v) for k, v in outputs.items()}
    return {SINGLE: _array(outputs)}


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _flat(metadata: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props are strings: lists and numbers as JSON."""
    return {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in metadata.items()
        if v is not None
    }


def _unflat(props: dict[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


TORCH = ("torch",)
KERAS = ("tensorflow", "keras")
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "onnx", ".onnx", "torch", "ONNX Runtime",
            (*TORCH, "onnx", "onnxscript", "onnxruntime"), "onnx",
            True, False, "metadata_props",
            _onnx_produce, _onnx_load, _onnx_metadata,
        ),
        Format(
            "tflite", ".tflite", "keras", "LiteRT (XNNPACK)",
            (*KERAS, "ai_edge_litert"), "tflite",
            True, True, f"flatbuffer metadata {METADATA_KEY!r}",
            _tflite_produce, _tflite_load, _tflite_metadata,
        ),
        Format(
            "keras", ".keras", "keras", "keras.models.load_model",
            KERAS, "keras",
            True, False, f"metadata.json[{METADATA_KEY!r}]",
            _keras_produce, _keras_load, _keras_metadata,
        ),
        Format(
            "savedmodel", "", "keras", "tf.saved_model.load",
            KERAS, "keras",
            True, False, f"assets.extra/{METADATA_KEY}.json",
            _savedmodel_produce, _savedmodel_load, _savedmodel_metadata,
        ),
        Format(
            "pt2", ".pt2", "torch", "torch.export.load",
            TORCH, "torch",
            True, False, f"extra file {METADATA_KEY}.json",
            _pt2_produce, _pt2_load, _pt2_metadata,
        ),
        Format(
            "executorch", ".pte", "torch", "the ExecuTorch runtime (XNNPACK)",
            (*TORCH, "executorch"), "executorch",
            False, True, f"constant method {METADATA_KEY}_metadata",
            _executorch_produce, _executorch_load, _executorch_metadata,
        ),
    )
}  # fmt: skip
