"""classifier (the head after the features): global pooling, an optional hidden
fully connected layer (V3; with batch norm in MobileNetV4), dropout and the logits
layer (none with num_classes 0: the pooled features are the output, as timm's
num_classes=0). Not a stage-table row.

Under timm's conventions (`classifier: conv_head`) the hidden layer is a 1x1 conv on
the pooled 1x1 map, as timm's `conv_head` (a 4-D weight), before flattening.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph, IRError
from . import base
from .base import BlockType, Context


@dataclass(frozen=True)
class Params:
    in_f: int
    hidden_c: int  # 0: no hidden layer
    hidden_act: str | None
    hidden_norm: bool  # batch norm after the hidden layer
    hidden_bias: bool  # the hidden layer's bias, as built (a folded norm gives one)
    dropout: float
    num_classes: int
    form: str  # how Keras spells a dense layer: "linear" or "conv1x1" (conventions)
    pool: str  # "avg" or "max"


def params(
    ctx: Context,
    hidden_c: int,
    hidden_act: str | None,
    hidden_norm: bool,
    hidden_bias: bool,
    dropout: float,
) -> Params:
    """`hidden_bias`: whether the spec's hidden layer has a bias in its trained form;
    a batch norm folded into a conv_head gives it one."""
    form = ctx.conv.classifier
    folded = hidden_norm and form == "conv_head" and ctx.spec.fold_batch_norm
    return Params(
        in_f=ctx.in_c,
        hidden_c=hidden_c,
        hidden_act=hidden_act,
        hidden_norm=hidden_norm,
        hidden_bias=hidden_bias or folded,
        dropout=dropout,
        num_classes=ctx.spec.num_classes,
        form=form,
        pool=ctx.spec.head.pool,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    conv_head = p.form == "conv_head" and p.hidden_c
    x = graph.add("pool", [x], f"{name}.pool", mode=p.pool, keepdims=bool(conv_head))
    features = p.in_f
    if p.hidden_c:
        # Folded into the conv of a conv_head; after a dense layer it stays.
        bn = ctx.bn(foldable=bool(conv_head)) if p.hidden_norm else None
        if conv_head:
            x = base.conv_bn_act(
                graph,
                x,
                f"{name}.hidden",
                out_c=p.hidden_c,
                conv=base.POINTWISE,
                act=p.hidden_act,
                bn=bn,
                bias=p.hidden_bias,
            )
            x = graph.add("flatten", [x], f"{name}.flatten")
        else:
            if bn is not None and not bn.type.dense:
                raise IRError(
                    f"{name}.hidden: {bn.type.name} normalises feature maps; after a "
                    "dense hidden layer only batch norm does (a 1x1 conv head, "
                    "conventions.classifier: conv_head, takes any norm)"
                )
            x = graph.add(
                "dense",
                [x],
                f"{name}.hidden",
                in_f=features,
                out_f=p.hidden_c,
                bias=p.hidden_bias,
                form=p.form,
            )
            if bn is not None:
                x = graph.add_norm(bn, x, f"{name}.hidden.bn")
            x = graph.add("act", [x], f"{name}.act", fn=p.hidden_act)
        features = p.hidden_c
    x = graph.add("dropout", [x], f"{name}.dropout", rate=p.dropout)
    if not p.num_classes:
        return x
    return graph.add(
        "dense",
        [x],
        f"{name}.logits",
        in_f=features,
        out_f=p.num_classes,
        bias=True,
        form="conv1x1" if p.form == "conv1x1" else "linear",
    )


BLOCK = BlockType(
    name="classifier",
    row=None,
    resolve=None,
    expand=expand,
    template="classifier",
    class_name="",  # nn.Sequential of framework layers, written in the model
    colour="#e8c1da",
)
