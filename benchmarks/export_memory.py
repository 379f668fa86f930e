"""Peak memory of `mbcompile export` per format and route, for a small and a large
spec, and the line through the two (base + bytes per parameter): the figures
mbcompile/export/memory.py's ROUTES hold, by which an export that cannot fit is
refused before it starts and TFLite takes its leaner route.

Each export is a fresh process (its own peak, os.wait4) reading a `.safetensors`
checkpoint of the generated PyTorch model's random initialisation, at 224x224,
validation included; each route of a format by itself (ROUTES altered in the
child process).

    python benchmarks/export_memory.py                    # every format, ~10 min
    python benchmarks/export_memory.py --formats tflite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import NOISE_NOTE, ROOT, SPECS
from weights_export import make_checkpoints, measure, python

sys.path.insert(0, str(ROOT))
from mbcompile import compiler  # NumPy only, no framework
from mbcompile.export.formats import FORMATS
from mbcompile.export.memory import GIB, ROUTES

SPECS_MEASURED = ("mobilenetv4_conv_small", "efficientnet_b7")
RESOLUTION = 224


def parameters(spec: Path) -> int:
    _, graph = compiler.load_and_expand(spec, [f"resolution={RESOLUTION}"])
    return compiler.cost_report(graph).total_params


def by_route(fmt: str, route: str, argv: list[str]) -> list[str]:
    """`mbcompile ARGV` in a fresh process whose export of `fmt` knows `route`
    only (what a machine short of memory would choose)."""
    return python(
        f"""
        import sys
        from mbcompile import cli
        from mbcompile.export import memory
        memory.ROUTES[{fmt!r}] = {{{route!r}: memory.ROUTES[{fmt!r}][{route!r}]}}
        sys.exit(cli.main({argv!r}))
        """
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--formats", nargs="*", default=list(ROUTES), choices=list(ROUTES)
    )
    args = parser.parse_args()
    peaks: dict[tuple[str, str], list[tuple[int, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mbcompile-bench-") as tmp:
        folder = Path(tmp)
        for name in SPECS_MEASURED:
            spec = SPECS / "timm" / f"{name}.yaml"
            count = parameters(spec)
            _, weights = make_checkpoints(folder, [], str(spec))
            print(f"{name}: {count / 1e6:.1f}M parameters at {RESOLUTION}x{RESOLUTION}")
            for fmt in args.formats:
                routes = ROUTES[fmt]
                for route in routes:
                    out = folder / f"{name}_{route}{FORMATS[fmt].suffix}"
                    argv = [
                        "export", str(spec), "--set", f"resolution={RESOLUTION}",
                        "--weights", str(weights), "--format", fmt, "-o", str(out),
                        "-q",
                    ]  # fmt: skip
                    wall, kib, code, err = measure(by_route(fmt, route, argv))
                    label = f"{fmt} {route}".strip()
                    status = "" if code == 0 else f"exit {code}: {err.strip()[-200:]}"
                    print(
                        f"  {label:<22} {wall:7.1f} s {kib / 1024:8.0f} MiB  {status}"
                    )
                    peaks.setdefault((fmt, route), []).append((count, kib * 1024.0))
    if len(SPECS_MEASURED) == 2:
        print("\nthe line through both (ROUTES in mbcompile/export/memory.py):")
        for (fmt, route), points in peaks.items():
            (p0, m0), (p1, m1) = points
            slope = (m1 - m0) / (p1 - p0)
            base = m0 - slope * p0
            label = f"{fmt} {route}".strip()
            print(
                f"  {label:<22} base {base / GIB:5.2f} GiB, {slope:6.1f} bytes/parameter"
            )
    print(f"\n{NOISE_NOTE}")


if __name__ == "__main__":
    main()
