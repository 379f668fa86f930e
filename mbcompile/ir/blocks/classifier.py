"""classifier (the head after the features): global pooling, an optional hidden
fully connected layer (V3), dropout and the logits layer. Not a stage-table row."""

from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph
from .base import BlockType, Context


@dataclass(frozen=True)
class Params:
    in_f: int
    hidden_c: int  # 0: no hidden layer
    hidden_act: str | None
    dropout: float
    num_classes: int
    form: str  # how Keras spells a dense layer: "linear" or "conv1x1" (conventions)
    pool: str  # "avg" or "max"


def params(
    ctx: Context, hidden_c: int, hidden_act: str | None, dropout: float
) -> Params:
    return Params(
        in_f=ctx.in_c,
        hidden_c=hidden_c,
        hidden_act=hidden_act,
        dropout=dropout,
        num_classes=ctx.spec.num_classes,
        form=ctx.conv.classifier,
        pool=ctx.spec.head.pool,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    x = graph.add("pool", [x], f"{name}.pool", mode=p.pool, keepdims=False)
    features = p.in_f
    if p.hidden_c:
        x = graph.add(
            "dense",
            [x],
            f"{name}.hidden",
            in_f=features,
            out_f=p.hidden_c,
            bias=True,
            form=p.form,
        )
        x = graph.add("act", [x], f"{name}.act", fn=p.hidden_act)
        features = p.hidden_c
    x = graph.add("dropout", [x], f"{name}.dropout", rate=p.dropout)
    return graph.add(
        "dense",
        [x],
        f"{name}.logits",
        in_f=features,
        out_f=p.num_classes,
        bias=True,
        form=p.form,
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
