"""Variant sweeps: a grid of `--set` values, each point costed and its latency
estimated, and the Pareto set of what fits a budget.

    mbcompile sweep specs/v3_large.yaml --vary width_multiplier=0.5:1.4:0.1 \\
        --vary resolution=128,160,192,224 --budget latency_ms=3

An axis is `KEY=a:b:step` (a, a + step, ... up to b, inclusive) or `KEY=v1,v2,...`
(values as `--set` reads them). The grid is every combination, in order, the last
axis varying fastest. Budgets (`latency_ms`, `macs`, `params`) bound a point from
above; among the points within budget, the Pareto set is those no other point beats
on both counts: a latency at most theirs with at least their capacity (MACs, or
parameters with `--objective params`), one of the two strictly. Nothing here
compiles: the command (`mbcompile.cli.sweep`) evaluates the points.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ..errors import SpecError, shorten
from .report import aligned, md_table

MAX_POINTS = 10_000
OBJECTIVES = ("macs", "params")
BUDGETS = {
    "latency_ms": "estimated latency in milliseconds",
    "macs": "multiply-accumulates",
    "params": "trainable parameters",
}


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[str, ...]  # as `--set` values

    @classmethod
    def parse(cls, text: str) -> Axis:
        where = f"--vary {shorten(text)}"
        key, sep, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise SpecError("expected KEY=a:b:step or KEY=v1,v2,...", source=where)
        if ":" in raw and "," not in raw:
            return cls(key, _range(raw, where))
        values = tuple(v.strip() for v in raw.split(","))
        if not all(values):
            raise SpecError("an empty value in the list", source=where)
        if len(set(values)) != len(values):
            raise SpecError("a value appears twice", source=where)
        return cls(key, values)


def _range(raw: str, where: str) -> tuple[str, ...]:
    parts = raw.split(":")
    if len(parts) != 3:
        raise SpecError("a range is a:b:step, e.g. 0.5:1.4:0.1", source=where)
    try:
        start, stop, step = (Decimal(p.strip()) for p in parts)
    except InvalidOperation:
        raise SpecError("a:b:step takes three numbers", source=where) from None
    if not all(d.is_finite() for d in (start, stop, step)):
        raise SpecError("a:b:step takes three finite numbers", source=where)
    if step <= 0:
        raise SpecError("the step must be greater than 0", source=where)
    if stop < start:
        raise SpecError(f"the range ends ({stop}) before it starts", source=where)
    count = int((stop - start) / step) + 1
    if count > MAX_POINTS:
        raise SpecError(f"{count:,} values; at most {MAX_POINTS:,}", source=where)
    return tuple(_number(start + i * step) for i in range(count))


def _number(value: Decimal) -> str:
    """A range value as `--set` text: 0.7, 1, 1.25 (never 0.7000000000000001)."""
    return format(value.normalize(), "f")


def parse_budgets(texts: list[str]) -> dict[str, float]:
    budgets: dict[str, float] = {}
    for text in texts:
        where = f"--budget {shorten(text)}"
        name, sep, raw = text.partition("=")
        name = name.strip()
        if not sep:
            raise SpecError("expected NAME=VALUE, e.g. latency_ms=3", source=where)
        if name not in BUDGETS:
            known = ", ".join(f"{k} ({v})" for k, v in BUDGETS.items())
            raise SpecError(
                f"unknown budget '{shorten(name)}'; one of {known}", source=where
            )
        try:
            value = float(raw)
        except ValueError:
            raise SpecError(f"'{shorten(raw)}' is not a number", source=where) from None
        if not math.isfinite(value) or value <= 0:
            raise SpecError("a budget must be a number greater than 0", source=where)
        if name in budgets:
            raise SpecError(f"{name} is budgeted twice", source=where)
        budgets[name] = value
    return budgets


def grid(axes: list[Axis]) -> list[tuple[str, ...]]:
    """Every combination's `--set` texts, the last axis varying fastest."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise SpecError(f"--vary {shorten(repeated)} is given twice")
    count = math.prod(len(a.values) for a in axes)
    if count > MAX_POINTS:
        raise SpecError(f"the grid has {count:,} points; at most {MAX_POINTS:,}")
    return [
        tuple(f"{a.key}={v}" for a, v in zip(axes, combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]


@dataclass
class Point:
    """One evaluated combination (or one that the spec refused: `error`)."""

    overrides: tuple[str, ...]
    macs: int = 0
    params: int = 0
    est_ms: float = 0.0
    bound: str = ""  # where most of its estimated time goes: compute or memory
    error: str = ""
    within_budget: bool = False
    pareto: bool = False
    measured: dict = field(default_factory=dict)  # runtime -> bench summary

    def value(self, name: str) -> float:
        return {"latency_ms": self.est_ms, "macs": self.macs, "params": self.params}[
            name
        ]


def select(points: list[Point], budgets: dict[str, float], objective: str) -> None:
    """Mark the points within budget and, among them, the Pareto set."""
    for p in points:
        p.within_budget = not p.error and all(
            p.value(name) <= limit for name, limit in budgets.items()
        )
        p.pareto = False
    for p in pareto(
        [p for p in points if p.within_budget], lambda p: p.est_ms, objective
    ):
        p.pareto = True


def pareto(points: list[Point], latency, objective: str) -> list[Point]:
    """Points no other point beats: latency at most theirs and capacity at least
    theirs, one strictly. Sorted by latency, then capacity, in O(n log n)."""
    capacity = (lambda p: p.macs) if objective == "macs" else (lambda p: p.params)
    ordered = sorted(points, key=lambda p: (latency(p), -capacity(p)))
    front: list[Point] = []
    best = -1
    for p in ordered:
        if capacity(p) > best:
            front.append(p)
            best = capacity(p)
        elif front and (latency(p), capacity(p)) == (latency(front[-1]), best):
            front.append(p)  # the same costs as a point on the front: not beaten
    return front


# ------------------------------------------------------------------------ formats


@dataclass(frozen=True)
class Sweep:
    spec: str
    device: str
    batch: int
    objective: str
    axes: list[Axis]
    budgets: dict[str, float]
    common: tuple[str, ...]  # --set applied to every point
    points: list[Point]
    interrupted: bool = False

    @property
    def evaluated(self) -> list[Point]:
        return [p for p in self.points if not p.error]

    @property
    def front(self) -> list[Point]:
        return sorted((p for p in self.points if p.pareto), key=lambda p: p.est_ms)

    def set_line(self, p: Point) -> str:
        return " ".join(f"--set {o}" for o in (*self.common, *p.overrides))


def summary(s: Sweep, total: int) -> list[str]:
    axes = " × ".join(f"{a.key} ({len(a.values)})" for a in s.axes)
    budget = ", ".join(f"{k} <= {v:g}" for k, v in s.budgets.items()) or "none"
    done = len(s.points)
    lines = [
        f"{s.spec}: {axes} = {total} points; device {s.device}, batch {s.batch}",
        f"budget: {budget}; {done} of {total} points done"
        + (" (interrupted)" if s.interrupted else "")
        + f", {len(s.evaluated)} valid, "
        f"{sum(p.within_budget for p in s.points)} within budget, "
        f"{len(s.front)} on the Pareto front ({s.objective} against est. latency)",
    ]
    errors = [p for p in s.points if p.error]
    if errors:
        lines.append(
            f"{len(errors)} points the spec refuses, e.g. "
            f"{' '.join(errors[0].overrides)}: {errors[0].error}"
        )
    return lines


def _measured_keys(s: Sweep) -> list[str]:
    return sorted({k for p in s.points for k in p.measured})


def front_rows(s: Sweep) -> list[tuple[str, ...]]:
    measured = _measured_keys(s)
    header = (
        "est. ms",
        *(f"{m} ms" for m in measured),
        "MACs",
        "params",
        "bound",
        *(a.key for a in s.axes),
        "--set",
    )
    rows = [header]
    for p in s.front:
        values = dict(o.split("=", 1) for o in p.overrides)
        rows.append(
            (
                f"{p.est_ms:.3f}",
                *(_measured_cell(p.measured.get(m)) for m in measured),
                f"{p.macs / 1e6:.1f}M",
                f"{p.params / 1e6:.2f}M",
                p.bound,
                *(values[a.key] for a in s.axes),
                s.set_line(p),
            )
        )
    return rows


def _measured_cell(result: dict | None) -> str:
    if not result:
        return "-"
    if "error" in result:
        return "FAILED"
    return f"{result['median_ms']:.3f}"


def table(s: Sweep, total: int) -> str:
    out = [*summary(s, total), ""]
    if s.front:
        right = set(range(len(_measured_keys(s)) + 3))
        out += aligned(front_rows(s), right)
    else:
        out.append("no point is within the budget")
    return "\n".join(out) + "\n"


def markdown(s: Sweep, total: int) -> str:
    out = [*summary(s, total), ""]
    if s.front:
        rows = front_rows(s)
        rows = [*rows[:1], *((*r[:-1], f"`{r[-1]}`") for r in rows[1:])]
        out += md_table(rows, set(range(len(_measured_keys(s)) + 3)))
    return "\n".join(out) + "\n"


def to_json(s: Sweep, total: int) -> str:
    data = {
        "spec": s.spec,
        "device": s.device,
        "batch": s.batch,
        "objective": s.objective,
        "axes": {a.key: list(a.values) for a in s.axes},
        "budgets": s.budgets,
        "set": list(s.common),
        "points_total": total,
        "interrupted": s.interrupted,
        "points": [
            {
                "set": list(p.overrides),
                "macs": p.macs,
                "params": p.params,
                "est_ms": p.est_ms,
                "bound": p.bound,
                "within_budget": p.within_budget,
                "pareto": p.pareto,
                "measured": p.measured,
                "error": p.error,
            }
            for p in s.points
        ],
    }
    return json.dumps(data, indent=2) + "\n"


def to_csv(s: Sweep, total: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    measured = _measured_keys(s)
    writer.writerow(
        (
            *(a.key for a in s.axes),
            "est_ms",
            *(f"{m}_ms" for m in measured),
            "macs",
            "params",
            "bound",
            "within_budget",
            "pareto",
            "error",
        )
    )
    for p in s.points:
        values = dict(o.split("=", 1) for o in p.overrides)
        writer.writerow(
            (
                *(values[a.key] for a in s.axes),
                f"{p.est_ms:.6f}" if not p.error else "",
                *((p.measured.get(m) or {}).get("median_ms", "") for m in measured),
                p.macs,
                p.params,
                p.bound,
                int(p.within_budget),
                int(p.pareto),
                p.error,
            )
        )
    return buffer.getvalue()


RENDER = {"table": table, "json": to_json, "csv": to_csv, "markdown": markdown}
