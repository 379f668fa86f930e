"""Where each tensor of a spec's network lives in each weights format, from the IR
alone — no framework is imported or model built to learn it.

- PyTorch (`.pt`, `.safetensors`): the generated module's state_dict keys
  (`backends.torch.state_dict_keys`), tensors in PyTorch's layout;
- Keras 3 (`.weights.h5`): one group per weighted layer,
  `layers/<class>[_<n>]/vars/<i>`, `<class>` the layer's class snake-cased and `<n>`
  its count among the layers of that class in the model (as Keras' saving_lib
  names them; the generated model creates the layers of a class in the IR's order),
  the group's `name` attribute the layer's name (`backends.keras.layer_names`);
  tensors in Keras' layout (`backends.weights`);
- legacy Keras (`.h5`, keras.applications'): groups named after the layers.

tests/test_checkpoints.py holds this against the generated models' own
`state_dict()` and Keras' own `save_weights` for every spec the tests build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..backends.keras import layer_classes, layer_names
from ..backends.torch import BN_COUNTER, state_dict_keys
from ..backends.weights import ParamOp, param_ops
from ..ir.graph import Graph


@dataclass(frozen=True)
class OpLayout:
    """One parametric op and its tensors' names in each format."""

    op: ParamOp
    torch_keys: tuple[str, ...]  # state_dict order
    keras_name: str  # the layer's name
    keras_path: str  # its group in a .weights.h5 file: "layers/conv2d_3"

    @property
    def counter_key(self) -> str | None:
        """BatchNorm's step counter, which follows its statistics in a
        state_dict (None for other ops)."""
        if self.op.kind != "bn":
            return None
        return self.torch_keys[0].rsplit(".", 1)[0] + "." + BN_COUNTER


def layout(graph: Graph) -> list[OpLayout]:
    ops = param_ops(graph)
    classes = dict(zip(graph.parametric(), layer_classes(graph), strict=True))
    # Keras counts a class's layers in execution order, which the parametric order
    # leaves only for ops stored last (CondConv's routing layer, called first)
    counters: dict[str, int] = {}
    paths: dict[str, str] = {}
    for node_id in (n for n in graph.order if n in classes):
        base = snake_case(classes[node_id])
        n = counters.get(base, 0)
        counters[base] = n + 1
        paths[node_id] = f"layers/{base}_{n}" if n else f"layers/{base}"
    return [
        OpLayout(op, keys, name, paths[op.name])
        for op, keys, name in zip(
            ops, state_dict_keys(graph), layer_names(graph), strict=True
        )
    ]


def snake_case(name: str) -> str:
    """keras' naming.to_snake_case: "DepthwiseConv2D" -> "depthwise_conv2d"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
