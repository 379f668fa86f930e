"""Side-by-side costs of several specs or `--set` variants of them.

    mbcompile compare specs/v2.yaml --variant width_multiplier=0.75 \\
        --variant width_multiplier=0.5
    mbcompile compare specs/v3_large.yaml specs/v3_small.yaml@resolution=160
    mbcompile compare specs/v2.yaml@width_multiplier=1.4,resolution=192 specs/v2.yaml

A column is `SPEC[@KEY=VALUE[,KEY=VALUE...]]`; every `--variant` adds, for each spec
given, one more column with those overrides on top; `--set` applies to all columns.
The first column is the baseline: every other value shows its change against it.
Rows are the totals, then MACs and parameters per stage-table row (`stem`,
`stages.<i>`, `head`, `classifier`), aligned by that label across columns.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .cli import add_overrides_argument
from .cost import Report
from .errors import SpecError
from .report import FORMATS, MIB, aligned, build, md_table

# Split "a=1,b.c=2" at commas that start another KEY=.
_NEXT_OVERRIDE = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")


@dataclass(frozen=True)
class Column:
    label: str
    spec: str
    overrides: tuple[str, ...]
    report: Report


def split_overrides(text: str) -> list[str]:
    return [part.strip() for part in _NEXT_OVERRIDE.split(text) if part.strip()]


def parse_column(text: str) -> tuple[str, list[str]]:
    """`path[@k=v,...]` -> (path, overrides). A path that exists wins over '@'."""
    if "@" not in text or Path(text).exists():
        return text, []
    path, _, rest = text.partition("@")
    overrides = split_overrides(rest)
    if not overrides:
        raise SpecError(f"'{text}': expected SPEC@KEY=VALUE[,KEY=VALUE...]")
    return path, overrides


def columns(
    specs: list[str], variants: list[str] = (), common: list[str] = ()
) -> list[Column]:
    from . import compiler

    wanted = []
    for text in specs:
        path, own = parse_column(text)
        wanted.append((path, own))
        wanted += [(path, own + split_overrides(v)) for v in variants]
    out = []
    for path, overrides in wanted:
        loaded, graph = compiler.load_and_expand(path, [*common, *overrides])
        label = Path(path).stem + ("@" + ",".join(overrides) if overrides else "")
        out.append(Column(label, path, tuple(overrides), build(loaded, graph)))
    return out


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
    order = {"stem": -1, "head": 10**6, "classifier": 10**6 + 1}
    labels = {s.label for c in cols for s in c.report.stages()}
    return sorted(labels, key=lambda s: order.get(s, int(s.partition(".")[2] or 0)))


def rows(cols: list[Column]) -> list[tuple[str, str, list[int | None]]]:
    """(section, row label, one value per column; None where a column lacks it)."""
    out = [("totals", name, [get(c.report) for c in cols]) for name, get in TOTALS]
    for field, section in (("macs", "MACs per stage"), ("params", "params per stage")):
        for label in stage_labels(cols):
            values = []
            for c in cols:
                stage = {s.label: s for s in c.report.stages()}.get(label)
                values.append(None if stage is None else getattr(stage, field))
            out.append((section, label, values))
    return out


def compact(value: int, row: str) -> str:
    if "bytes" in row:
        return f"{value / MIB:.2f} MiB"
    if row == "resolution":
        return str(value)
    if abs(value) >= 10**6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 10**3:
        return f"{value / 1e3:.1f}K"
    return str(value)


def delta(value: int | None, base: int | None) -> str:
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
            "—" if v is None else compact(v, label) + (delta(v, base) if i else "")
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


# --------------------------------------------------------------- `mbcompile compare`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC[@KEY=VALUE,...]",
        help="spec files, each optionally with overrides after '@'",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="one more column per spec with these overrides (repeatable)",
    )
    add_overrides_argument(parser, help="override applied to every column (repeatable)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw MACs per stage, grouped by column (.png or .svg; matplotlib)",
    )


def run(args: argparse.Namespace) -> int:
    cols = columns(args.specs, args.variant, args.overrides)
    sys.stdout.write(RENDER[args.format](cols))
    if args.plot:
        from .plots import compare_chart

        compare_chart(cols, args.plot)
        print(f"mbcompile: wrote {args.plot}", file=sys.stderr)
    return 0
