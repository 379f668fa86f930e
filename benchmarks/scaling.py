"""How compile time and memory grow with the number of blocks.

Synthetic V2-like specs (a stem, then stride-1 inverted-residual rows of at most 64
repeats each, the schema's per-row cap) of 10, 100, 1,000 and 5,000 blocks are
written to a temporary directory. For each: wall time of load + expand, generating
both backends' source, and the cost report (computed and formatted), i.e. the work
of `mbcompile SPEC --report`; then, in a separate pass, the peak Python memory of the
same work (tracemalloc, which would slow the timed pass). A roughly constant time
per block, and a growth exponent near 1, show linear growth.

The spec schema caps a network at MAX_BLOCKS stage-table blocks (sum of n). Sizes
above it are compiled with that cap lifted in this process only (the CLI would
reject them); `--respect-cap` skips them instead.

Target: compile + report of the 5,000-block spec ≤ 3 s.

    python benchmarks/scaling.py [--blocks 10 100 1000 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import tracemalloc
from pathlib import Path

from _common import NOISE_NOTE, Stats, header, time_once, verdict

TARGET_BLOCKS, TARGET_S = 5000, 3.0
SLOW_S = 10.0  # a size whose first run takes longer is not repeated
MAX_REPEATS_PER_ROW = 64  # mbcompile.frontend.fields.MAX_REPEATS


def synthetic_spec(blocks: int, channels: int = 16, resolution: int = 32) -> str:
    """A V2-like spec with exactly `blocks` stride-1 inverted-residual blocks."""
    rows = []
    left = blocks
    while left:
        n = min(left, MAX_REPEATS_PER_ROW)
        rows.append(f"  - {{t: 6, c: {channels}, n: {n}, s: 1}}")
        left -= n
    return "\n".join(
        [
            f"name: synthetic_{blocks}",
            "family: v2",
            f"resolution: {resolution}",
            "num_classes: 10",
            "conventions: torchvision",
            f"stem: {{c: {channels}, k: 3, s: 2, act: relu6}}",
            "block: inverted_residual",
            "stages:",
            *rows,
            "head: {conv: {c: 64, act: relu6}, pool: avg, dropout: 0.0}",
            "",
        ]
    )


def compile_and_report(path: Path) -> dict[str, float]:
    """Phase times (s) of the work `mbcompile SPEC --report` does, minus writing."""
    from mbcompile import compiler
    from mbcompile.analysis.report import table as format_table

    times = {}
    box = {}

    def load():
        _, box["graph"] = compiler.load_and_expand(path)

    times["load+expand"] = time_once(load)
    for backend in ("torch", "keras"):
        times[backend] = time_once(lambda b=backend: compiler.generate(box["graph"], b))
    times["report"] = time_once(
        lambda: format_table(compiler.cost_report(box["graph"]))
    )
    times["total"] = sum(times.values())
    return times


def peak_memory(path: Path) -> int:
    tracemalloc.start()
    try:
        compile_and_report(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def block_cap() -> int:
    from mbcompile.frontend import load

    return getattr(load, "MAX_BLOCKS", sys.maxsize)


def lift_block_cap(blocks: int) -> None:
    from mbcompile.frontend import load

    if hasattr(load, "MAX_BLOCKS"):
        load.MAX_BLOCKS = max(load.MAX_BLOCKS, blocks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per size")
    parser.add_argument(
        "--respect-cap",
        action="store_true",
        help="skip sizes above the schema's block cap instead of lifting it",
    )
    args = parser.parse_args(argv)
    print(NOISE_NOTE)
    cap = block_cap()
    sizes = sorted(args.blocks)
    over = [b for b in sizes if b > cap]
    if over:
        action = "skipped" if args.respect_cap else "compiled with the cap lifted"
        print(
            f"note: the spec schema allows at most {cap} blocks (MAX_BLOCKS); "
            f"{', '.join(map(str, over))} {action} (the CLI rejects them)."
        )
        if args.respect_cap:
            sizes = [b for b in sizes if b <= cap]
        else:
            lift_block_cap(max(over))

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        compile_and_report(write_spec(Path(tmp), 10))  # imports, template loading
        for blocks in sizes:
            path = write_spec(Path(tmp), blocks)
            runs = [compile_and_report(path)]
            if runs[0]["total"] < SLOW_S:  # one run says enough when it is this slow
                runs += [compile_and_report(path) for _ in range(args.runs - 1)]
            median = {k: Stats.of([r[k] for r in runs]).median for k in runs[0]}
            results[blocks] = (median, Stats.of([r["total"] for r in runs]))
            results[blocks] += (peak_memory(path),)

    header(
        f"compile + report, median of {args.runs} (1 when over {SLOW_S:.0f} s); "
        "seconds; memory: tracemalloc"
    )
    phases = list(next(iter(results.values()))[0])
    print(
        f"{'blocks':>7} "
        + " ".join(f"{p:>11}" for p in phases)
        + f" {'spread':>7} {'per block':>10} {'peak MiB':>9} {'KiB/block':>9}"
    )
    for blocks, (median, total, peak) in results.items():
        print(
            f"{blocks:>7} "
            + " ".join(f"{median[p]:11.4f}" for p in phases)
            + f" {total.spread * 50:6.1f}% {total.median / blocks * 1e3:8.3f}ms"
            f" {peak / 2**20:9.1f} {peak / blocks / 1024:9.1f}"
        )

    header("growth")
    pairs = list(results.items())
    for (b0, (m0, _, p0)), (b1, (m1, _, p1)) in itertools.pairwise(pairs):
        time_exp = math.log(m1["total"] / m0["total"]) / math.log(b1 / b0)
        mem_exp = math.log(p1 / p0) / math.log(b1 / b0)
        print(
            f"{b0:>5} -> {b1:<5} time x{m1['total'] / m0['total']:7.2f} "
            f"(exponent {time_exp:.2f}), memory x{p1 / p0:6.2f} "
            f"(exponent {mem_exp:.2f}); 1.0 = linear"
        )

    header("targets")
    if TARGET_BLOCKS in results:
        total = results[TARGET_BLOCKS][0]["total"]
        print(
            f"compile + report, {TARGET_BLOCKS} blocks: {verdict(total, TARGET_S, ' s')}"
        )
    else:
        print(f"{TARGET_BLOCKS} blocks not measured")
    return 0


def write_spec(directory: Path, blocks: int) -> Path:
    path = directory / f"synthetic_{blocks}.yaml"
    path.write_text(synthetic_spec(blocks))
    return path


if __name__ == "__main__":
    sys.exit(main())
