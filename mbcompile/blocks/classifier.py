"""classifier (the head after the features): global pooling, an optional hidden
fully connected layer (V3), dropout and the logits layer."""

from __future__ import annotations

from ..ir import Graph
from .common import Context

NAME = "classifier"


def resolve(
    ctx: Context, hidden_c: int, hidden_act: str | None, dropout: float
) -> dict:
    return {
        "in_f": ctx.in_c,
        "hidden_c": hidden_c,
        "hidden_act": hidden_act,
        "dropout": dropout,
        "num_classes": ctx.spec.num_classes,
        "form": ctx.conv.classifier,  # how Keras spells a dense layer (see conventions)
        "pool": ctx.spec.head.pool,  # "avg" or "max"
    }


def expand(graph: Graph, x: str, p: dict, name: str, ctx: Context) -> str:
    x = graph.add("pool", [x], f"{name}.pool", mode=p["pool"], keepdims=False)
    features = p["in_f"]
    if p["hidden_c"]:
        x = graph.add(
            "dense",
            [x],
            f"{name}.hidden",
            in_f=features,
            out_f=p["hidden_c"],
            bias=True,
            form=p["form"],
        )
        x = graph.add("act", [x], f"{name}.act", fn=p["hidden_act"])
        features = p["hidden_c"]
    x = graph.add("dropout", [x], f"{name}.dropout", rate=p["dropout"])
    return graph.add(
        "dense",
        [x],
        f"{name}.logits",
        in_f=features,
        out_f=p["num_classes"],
        bias=True,
        form=p["form"],
    )
