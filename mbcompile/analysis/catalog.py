"""The bundled specs at a glance (`mbcompile specs`): one row per spec with its
family, conventions, resolution, parameters and MACs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..ir.graph import Graph
from .cost import report
from .report import aligned, md_table

FORMATS = ("table", "json", "markdown")
HEADER = ("name", "family", "conventions", "resolution", "params", "MACs", "file")


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    conventions: str
    resolution: int
    params: int  # trainable
    macs: int
    file: str


def entry(name: str, graph: Graph, shown: str) -> Entry:
    costs = report(graph)
    net = graph.network
    return Entry(
        name,
        net.family,
        net.conventions.profile,
        net.resolution,
        costs.trainable_params,
        costs.macs,
        shown,
    )


def render(entries: list[Entry], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([asdict(e) for e in entries], indent=2) + "\n"
    rows = [HEADER] + [
        (
            e.name,
            e.family,
            e.conventions,
            str(e.resolution),
            f"{e.params:,}",
            f"{e.macs:,}",
            e.file,
        )
        for e in entries
    ]
    right = {3, 4, 5}
    lines = md_table(rows, right) if fmt == "markdown" else aligned(rows, right)
    return "\n".join(lines) + "\n"
