"""What every block module shares: the expansion context and the op sequences
(conv + BN + activation, squeeze-excite) that several block types contain."""

from __future__ import annotations

from dataclasses import dataclass

from ..channels import make_divisible, scale_width
from ..conventions import Conventions
from ..ir import Graph
from ..spec import Spec


@dataclass
class Context:
    """Read-only facts about the network plus the running input of the next block."""

    spec: Spec
    conv: Conventions
    in_c: int  # channels entering the next block (after width scaling)
    in_raw: int  # the same, as the paper's table gives it (before width scaling)
    first_block: bool = True  # no stage-table block emitted yet
    # Dilation that replaces stride once the network reached `spec.output_stride`.
    rate: int = 1

    @property
    def width(self) -> float:
        return self.spec.width_multiplier

    def scale(self, channels: int, stage: bool = False) -> int:
        """Width-scaled channels; `stage` for outputs of stage-table rows."""
        rounding = self.conv.width_rounding
        truncate = rounding == "truncate" or (stage and rounding == "truncate_stages")
        return scale_width(channels, self.width, self.spec.channel_divisor, truncate)

    def divisible(self, value: float) -> int:
        return make_divisible(value, self.spec.channel_divisor)

    @property
    def bn(self) -> dict | None:
        """Batch-norm attributes, or None when batch norm is folded into the convs."""
        if self.spec.fold_batch_norm:
            return None
        return {"eps": self.conv.bn_epsilon, "momentum": self.conv.bn_momentum}


def padding(
    rule: str, kernel: int, stride: int, dilation: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Explicit (top, bottom, left, right) padding of a convolution.

    Stride 1 is always symmetric. At stride 2, `rule` picks between the frameworks'
    habits (see conventions.py): torchvision's symmetric pad, TensorFlow's SAME
    (computed from the actual input size) or keras' fixed V1 pad at the end.
    """
    span = dilation * (kernel - 1)  # effective kernel size minus one
    if stride == 1 or rule == "symmetric":
        p = span // 2
        return (p, p, p, p)
    if rule == "end":
        before, after = (span + 1) // 2 - 1, (span + 1) // 2
        return (before, after, before, after)
    pads = []
    for n in size:  # TensorFlow SAME
        out = -(-n // stride)
        total = max((out - 1) * stride + span + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return (pads[0], pads[1], pads[2], pads[3])


def is_symmetric(pad: tuple[int, int, int, int]) -> bool:
    return pad[0] == pad[1] == pad[2] == pad[3]


def conv_bn_act(
    graph: Graph,
    x: str,
    name: str,
    *,
    out_c: int,
    kernel: int,
    stride: int,
    dilation: int,
    pad: tuple[int, int, int, int],
    act: str | None,
    bn: dict | None,
    depthwise: bool = False,
    multiplier: int = 1,
) -> str:
    """[pad] -> conv or depthwise conv (no bias) -> batch norm -> [activation].

    With `bn` None (folded for inference) the conv has a bias and no batch norm."""
    in_c = graph.shape(x)[0]
    if not is_symmetric(pad):
        x = graph.add("pad", [x], f"{name}.pad", pad=pad)
        padding = (0, 0)
    else:
        padding = (pad[0], pad[0])
    common = {
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "bias": bn is None,
    }
    if depthwise:
        x = graph.add(
            "dwconv",
            [x],
            f"{name}.conv",
            channels=in_c,
            multiplier=multiplier,
            **common,
        )
    else:
        x = graph.add(
            "conv", [x], f"{name}.conv", in_c=in_c, out_c=out_c, groups=1, **common
        )
    if bn is not None:
        x = graph.add("bn", [x], f"{name}.bn", channels=graph.shape(x)[0], **bn)
    if act is not None:
        x = graph.add("act", [x], f"{name}.act", fn=act)
    return x


def pointwise(
    graph: Graph, x: str, name: str, out_c: int, act: str | None, bn: dict | None
) -> str:
    """A 1x1 conv-bn[-act]: the expand and projection layers of the block types."""
    return conv_bn_act(
        graph,
        x,
        name,
        out_c=out_c,
        kernel=1,
        stride=1,
        dilation=1,
        pad=(0, 0, 0, 0),
        act=act,
        bn=bn,
    )


def squeeze_excite(graph: Graph, x: str, name: str, squeeze_c: int) -> str:
    """x * hardsigmoid(fc2(relu(fc1(avgpool(x))))), the MobileNet V3 SE module."""
    channels = graph.shape(x)[0]
    s = graph.add("pool", [x], f"{name}.pool", mode="avg", keepdims=True)
    fc = {
        "kernel": 1,
        "stride": 1,
        "dilation": 1,
        "padding": (0, 0),
        "groups": 1,
        "bias": True,
    }
    s = graph.add("conv", [s], f"{name}.fc1", in_c=channels, out_c=squeeze_c, **fc)
    s = graph.add("act", [s], f"{name}.relu", fn="relu")
    s = graph.add("conv", [s], f"{name}.fc2", in_c=squeeze_c, out_c=channels, **fc)
    s = graph.add("act", [s], f"{name}.gate", fn="hardsigmoid")
    return graph.add("mul", [x, s], f"{name}.mul")
