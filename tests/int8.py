"""Post-training static int8 quantization of generated models, as users deploy them
to phones (tests/test_learning.py; benchmarks/int8_latency.py times the results).

- PyTorch: the PT2E flow (torch.export, torchao's prepare_pt2e / convert_pt2e with
  ExecuTorch's XNNPACKQuantizer: int8 activations per tensor, int8 weights per
  output channel), lowered to ExecuTorch's XNNPACK backend and run by the ExecuTorch
  runtime.
- Keras: TFLite full-integer conversion (int8 weights, activations, input and
  output) calibrated on a representative dataset, as `mbcompile export --int8`
  converts (mbcompile.export.formats.keras_to_tflite), run by the LiteRT
  interpreter.

Both calibrate on training images, never on the images they are evaluated on.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

# ----------------------------------------------------------------------- PyTorch


def pt2e_quantize(model, example, calibration: list[np.ndarray]):
    """The int8 GraphModule of `model` (convert_pt2e's, quantize/dequantize around
    every quantized op), for inputs shaped like `example` (NCHW, static batch)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    model.eval()
    graph = torch.export.export(model, (torch.from_numpy(example),)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(torch.from_numpy(batch))
    return convert_pt2e(prepared)


def xnnpack_program(module, example):
    """`module` (float or convert_pt2e's int8) lowered to ExecuTorch with every op
    it can take delegated to XNNPACK: (the .pte bytes, how many XNNPACK partitions,
    the other ops of the program by name: copies into memory formats, getitem)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module, (torch.from_numpy(example),))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    graph = edge.exported_program().graph_module.graph
    calls = [node for node in graph.nodes if node.op == "call_function"]
    delegates = [n for n in calls if "executorch_call_delegate" in str(n.target)]
    others = Counter(op_name(node.target) for node in calls if node not in delegates)
    return edge.to_executorch().buffer, len(delegates), others


def op_name(target) -> str:
    """`_to_dim_order_copy` for an EdgeOpOverload of dim_order_ops::_to_dim_order_copy,
    the function's name otherwise (`getitem`)."""
    name = target.name() if hasattr(target, "name") else target.__name__
    return name.split("::")[-1].split(".")[0]


class ExecuTorchModel:
    """A .pte program run by the ExecuTorch runtime (NCHW float32 in, logits out)."""

    def __init__(self, buffer: bytes):
        from executorch.runtime import Runtime

        self._buffer = buffer  # the runtime reads the program from this memory
        self._method = Runtime.get().load_program(buffer).load_method("forward")

    def __call__(self, x: np.ndarray):
        import torch

        (output,) = self._method.execute([torch.from_numpy(x)])
        return output.numpy()


# ----------------------------------------------------------------------- TFLite


def tflite_ops(flatbuffer: bytes) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    return Counter(op["op_name"] for op in interpreter._get_ops_details())


class TFLiteModel:
    """A .tflite flatbuffer run by LiteRT for a fixed batch size: NHWC float32 in,
    float32 logits out (quantized and dequantized with the model's own scales when
    its input and output are int8)."""

    def __init__(self, flatbuffer: bytes, batch: int, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(
            model_content=flatbuffer, num_threads=num_threads
        )
        (inp,) = self._interpreter.get_input_details()
        self._interpreter.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
        self._interpreter.allocate_tensors()
        (self.input,) = self._interpreter.get_input_details()
        (self.output,) = self._interpreter.get_output_details()

    def quantize(self, x: np.ndarray) -> np.ndarray:
        if self.input["dtype"] != np.int8:
            return x.astype(np.float32)
        scale, zero = self.input["quantization"]
        return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)

    def invoke(self) -> None:
        self._interpreter.invoke()

    def set_input(self, x: np.ndarray) -> None:
        self._interpreter.set_tensor(self.input["index"], self.quantize(x))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.invoke()
        y = self._interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.int8:
            return y
        scale, zero = self.output["quantization"]
        return (y.astype(np.float32) - zero) * scale

    def xnnpack_partitions(self) -> int:
        """How many pieces of the graph the XNNPACK delegate took (one DELEGATE node
        each); ops it does not take run on TFLite's own kernels in between."""
        details = self._interpreter._get_ops_details()
        return sum(op["op_name"] == "DELEGATE" for op in details)

    def tensor_types(self) -> Counter:
        """How many tensors of the graph hold each dtype."""
        details = self._interpreter.get_tensor_details()
        return Counter(np.dtype(d["dtype"]).name for d in details)
