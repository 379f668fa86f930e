"""Side-by-side costs of several specs or `--set` variants of them: the rows and
their formats (the columns are made by `mbcompile.cli.compare`).

    mbcompile compare specs/v2.yaml --variant width_multiplier=0.75 \\
        --variant width_multiplier=0.5
    mbcompile compare specs/v3_large.yaml specs/v3_small.yaml@resolution=160
    mbcompile compare specs/v2.yaml@width_multiplier=1.4,resolution=192 specs/v2.yaml

A column is `SPEC[@KEY=VALUE[,KEY=VALUE...]]`; every `--variant` adds, for each spec
given, one more column with those overrides on top; `--set` applies to all columns.
The first column is the baseline: every other value shows its change against it.
Rows are the totals (with the latency estimated on `--device`, default
phone_cpu), then MACs, parameters and estimated latency per stage-table row
(`stem`, `stages.<i>`, `head`, `classifier`), aligned by that label across columns.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from .cost import Report
from .latency import Latency
from .report import MIB, aligned, md_table


@dataclass(frozen=True)
class Column:
    label: str
    spec: str
    overrides: tuple[str, ...]
    report: Report
    latency: Latency


# ------------------------------------------------------------------------ rows

# Totals compared: (label, value of a report).
TOTALS = (
    ("resolution", lambda r: r.resolution),
    ("trainable parameters", lambda r: r.trainable_params),
    ("batch-norm statistics", lambda r: r.non_trainable_params),
    ("MACs", lambda r: r.macs),
    ("fvcore FLOPs", lambda r: r.fvcore_flops),
    ("weights fp32 (bytes)", lambda r: r.weight_bytes("float32")),
    ("peak activations fp32 (bytes)", lambda r: r.peak_activation_bytes("float32")),
)


def stage_labels(cols: list[Column]) -> list[str]:
    """Stage labels in network order, the union over all columns."""
    order = {
        "stem": (-1,),
        "neck": (10**6 - 1,),
        "head": (10**6,),
        "classifier": (10**6 + 1,),
    }
    labels = {s.label for c in cols for s in c.report.stages()}

    def position(label: str) -> tuple[int, ...]:  # stages.3 or stages.2.0
        return order.get(label) or tuple(int(p) for p in label.split(".")[1:])

    return sorted(labels, key=position)


def device_label(cols: list[Column]) -> str:
    return cols[0].latency.device.name


def rows(cols: list[Column]) -> list[tuple[str, str, list[float | None]]]:
    """(section, row label, one value per column; None where a column lacks it).
    Latencies are in milliseconds."""
    out = [("totals", name, [get(c.report) for c in cols]) for name, get in TOTALS]
    latency = f"est. latency on {device_label(cols)} (ms)"
    out.append(("totals", latency, [c.latency.total_ms for c in cols]))
    for field, section in (("macs", "MACs per stage"), ("params", "params per stage")):
        for label in stage_labels(cols):
            values = []
            for c in cols:
                stage = {s.label: s for s in c.report.stages()}.get(label)
                values.append(None if stage is None else getattr(stage, field))
            out.append((section, label, values))
    section = f"est. ms per stage ({device_label(cols)})"
    for label in stage_labels(cols):
        values = []
        for c in cols:
            seconds = c.latency.stages().get(label)
            values.append(None if seconds is None else seconds * 1e3)
        out.append((section, label, values))
    return out


def compact(value: float, row: str, section: str = "") -> str:
    if row.startswith("est. latency") or section.startswith("est. ms"):
        return f"{value:.3f}"
    if "bytes" in row:
        return f"{value / MIB:.2f} MiB"
    if row == "resolution":
        return str(value)
    if abs(value) >= 10**6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 10**3:
        return f"{value / 1e3:.1f}K"
    return str(value)


def delta(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return ""
    if base == 0:
        return "" if value == 0 else " (new)"
    change = 100 * (value - base) / base
    return f" ({change:+.1f}%)" if round(change, 1) else " (=)"


def cells(cols: list[Column]) -> list[tuple[str, tuple[str, ...]]]:
    """(section, row cells) with compact values and deltas against column 1."""
    out = []
    for section, label, values in rows(cols):
        base = values[0]
        shown = [
            "—"
            if v is None
            else compact(v, label, section) + (delta(v, base) if i else "")
            for i, v in enumerate(values)
        ]
        out.append((section, (label, *shown)))
    return out


# --------------------------------------------------------------------- formats


def table(cols: list[Column]) -> str:
    out = []
    grouped: dict[str, list[tuple[str, ...]]] = {}
    for section, row in cells(cols):
        grouped.setdefault(section, []).append(row)
    right = set(range(1, len(cols) + 1))
    for section, body in grouped.items():
        if out:
            out.append("")
        out += aligned([(section, *(c.label for c in cols)), *body], right)
    return "\n".join(out) + "\n"


def markdown(cols: list[Column]) -> str:
    out = [f"Baseline: `{cols[0].label}`; changes are against it.", ""]
    grouped: dict[str, list[tuple[str, ...]]] = {}
    for section, row in cells(cols):
        grouped.setdefault(section, []).append(row)
    right = set(range(1, len(cols) + 1))
    for section, body in grouped.items():
        out += [f"### {section}", ""]
        out += md_table([("", *(f"`{c.label}`" for c in cols)), *body], right)
        out.append("")
    return "\n".join(out)


def to_csv(cols: list[Column]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "row", *(c.label for c in cols)))
    for section, label, values in rows(cols):
        writer.writerow((section, label, *("" if v is None else v for v in values)))
    return buffer.getvalue()


def to_json(cols: list[Column]) -> str:
    data = {
        "baseline": cols[0].label,
        "device": device_label(cols),
        "columns": [
            {"label": c.label, "spec": c.spec, "overrides": list(c.overrides)}
            for c in cols
        ],
        "rows": [
            {"section": s, "row": label, "values": values}
            for s, label, values in rows(cols)
        ],
    }
    return json.dumps(data, indent=2) + "\n"


RENDER = {"table": table, "markdown": markdown, "csv": to_csv, "json": to_json}
