"""Time and peak memory of `mbcompile weights` and `mbcompile export` for an
EfficientNet-B7-sized spec (66M parameters), each command a fresh process.

`weights` reads the checkpoint (`.safetensors`, `.pt`) and writes Keras weights
(`.weights.h5`) from what the IR knows, without TensorFlow: its goal is at most
twice the time of reading the file alone (safetensors / torch.load, also a fresh
process) plus one second, and a peak memory of at most twice the checkpoint's size.
`export` then runs once per format (validation included).

The spec is specs/timm/efficientnet_b7.yaml when it exists, else efficientnet_b3
with `--set` (width 2.0, depth 3.1: timm's B7 compound coefficients). Weights are
the generated PyTorch model's own random initialisation; nothing is downloaded.

    python benchmarks/weights_export.py                       # weights + every format
    python benchmarks/weights_export.py --formats tflite onnx --resolution 224
    python benchmarks/weights_export.py --formats             # no export of B7
    python benchmarks/weights_export.py --formats --no-path   # weights only

Without `--no-path`, the mobilenetv4_conv_small path (checkpoint -> validated
TFLite, importing TensorFlow) runs too, whatever `--formats` says.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import NOISE_NOTE, ROOT, SPECS

sys.path.insert(0, str(ROOT))
from mbcompile.export.formats import FORMATS  # NumPy only, no framework

B7 = SPECS / "timm" / "efficientnet_b7.yaml"
B7_SETS = [
    "name=efficientnet_b7",
    "width_multiplier=2.0",
    "depth_coefficient=3.1",
]


def spec_args() -> list[str]:
    if B7.exists():
        return [str(B7)]
    args = [str(SPECS / "timm" / "efficientnet_b3.yaml")]
    for item in B7_SETS:
        args += ["--set", item]
    return args


def measure(argv: list[str]) -> tuple[float, int, int, str]:
    """(wall seconds, peak resident KiB, exit code, standard error) of a fresh
    process, its own peak (os.wait4's usage of that child alone)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return wall, usage.ru_maxrss, process.returncode, text


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def make_checkpoints(
    folder: Path, sets: list[str], spec: str | None = None
) -> tuple[Path, Path]:
    """The spec's (default: the B7-sized one's) generated PyTorch model, randomly
    initialised, saved as .pt and .safetensors (in a child process: this one stays
    small)."""
    spec = spec or spec_args()[0]
    stem = "b7" if spec == spec_args()[0] else Path(spec).stem
    pt, safe = folder / f"{stem}.pt", folder / f"{stem}.safetensors"
    code = f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        import mbcompile
        from safetensors.torch import save_file
        spec, sets = {spec!r}, {sets!r}
        model = mbcompile.build_model(spec, "torch", overrides=sets)
        state = model.state_dict()
        torch.save(state, {str(pt)!r})
        save_file(state, {str(safe)!r})
    """
    done = subprocess.run(python(code), capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"could not make the checkpoints:\n{done.stderr}")
    return pt, safe


def read_alone(path: Path) -> list[str]:
    """Reading the checkpoint and nothing else: every tensor in memory."""
    if path.suffix == ".safetensors":
        return python(
            f"""
            from safetensors import safe_open
            with safe_open({str(path)!r}, framework="numpy") as f:
                total = sum(f.get_tensor(k).nbytes for k in f.keys())
            """
        )
    return python(
        f"""
        import torch
        state = torch.load({str(path)!r}, map_location="cpu", weights_only=True)
        total = sum(t.numel() for t in state.values())
        """
    )


def mbcompile(*args: str) -> list[str]:
    return [sys.executable, "-m", "mbcompile", *args]


def row(label: str, wall: float, kib: int, extra: str = "") -> str:
    return f"  {label:<34} {wall:7.2f} s  {kib / 1024:8.0f} MiB  {extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS)
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=224,
        help="export resolution (B7's own is 600; weights do not depend on it)",
    )
    parser.add_argument(
        "--path",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time checkpoint -> validated TFLite for mobilenetv4_conv_small",
    )
    args = parser.parse_args()
    sets = [] if B7.exists() else B7_SETS
    sets = [*sets, f"resolution={args.resolution}"]
    overrides = [a for s in sets for a in ("--set", s)]
    spec = spec_args()[0]
    print(f"spec: {Path(spec).name} {' '.join(overrides)}")
    with tempfile.TemporaryDirectory(prefix="mbcompile-bench-") as tmp:
        folder = Path(tmp)
        pt, safe = make_checkpoints(folder, sets)
        size = safe.stat().st_size
        print(
            f"checkpoint: {size / 2**20:.0f} MiB (.safetensors), "
            f"{pt.stat().st_size / 2**20:.0f} MiB (.pt)"
        )
        print(
            "\nweights -> .weights.h5 (fresh processes; goal: time <= 2 x read + 1 s,"
            f" peak <= 2 x checkpoint = {2 * size / 2**20:.0f} MiB)"
        )
        for source in (safe, pt):
            read_wall, read_kib, code, err = measure(read_alone(source))
            if code:
                sys.exit(err)
            print(row(f"read {source.suffix} alone", read_wall, read_kib))
            target = folder / "out.weights.h5"
            wall, kib, code, err = measure(
                mbcompile(
                    "weights",
                    spec,
                    *overrides,
                    "--from",
                    str(source),
                    "--to",
                    str(target),
                )
            )
            if code:
                sys.exit(err)
            goal_time = 2 * read_wall + 1
            verdict = (
                f"time {'ok' if wall <= goal_time else 'OVER'} ({wall / read_wall:.2f}x "
                f"read), memory {'ok' if kib * 1024 <= 2 * size else 'OVER'} "
                f"({kib * 1024 / size:.2f}x checkpoint)"
            )
            print(row(f"mbcompile weights {source.suffix}", wall, kib, verdict))
        if args.formats:
            print(
                f"\nexport --weights .safetensors at {args.resolution}x"
                f"{args.resolution} (validation included)"
            )
        for fmt in args.formats:
            target = folder / f"b7{FORMATS[fmt].suffix or '_saved_model'}"
            wall, kib, code, err = measure(
                mbcompile(
                    "export",
                    spec,
                    *overrides,
                    "--weights",
                    str(safe),
                    "--format",
                    fmt,
                    "-o",
                    str(target),
                    "-q",
                )
            )
            last = err.strip().splitlines()[-1] if err.strip() else ""
            print(
                row(
                    f"mbcompile export --format {fmt}",
                    wall,
                    kib,
                    "" if code == 0 else f"exit {code}: {last}",
                )
            )
        if args.path:
            whole_path(folder)
    print(f"\n{NOISE_NOTE}")


def whole_path(folder: Path) -> None:
    """Checkpoint -> validated TFLite for mobilenetv4_conv_small at 224: one
    `export` command from .safetensors, and `weights` then `export` from the
    .weights.h5 (the issue quotes litert-torch's direct conversion of timm's model
    at 12 s on the machine it was measured on)."""
    name = "mobilenetv4_conv_small"
    code = f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import mbcompile
        from safetensors.torch import save_file
        save_file(mbcompile.build_model({name!r}, "torch").state_dict(),
                  {str(folder / "mnv4s.safetensors")!r})
    """
    done = subprocess.run(python(code), capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(done.stderr)
    safe, h5 = folder / "mnv4s.safetensors", folder / "mnv4s.weights.h5"
    print(f"\n{name}: checkpoint -> validated TFLite (224x224)")
    steps = [
        ("export --weights .safetensors", mbcompile(
            "export", name, "--weights", str(safe), "--format", "tflite",
            "-o", str(folder / "a.tflite"), "-q")),
        ("weights .safetensors -> .weights.h5", mbcompile(
            "weights", name, "--from", str(safe), "--to", str(h5))),
        ("export --weights .weights.h5", mbcompile(
            "export", name, "--weights", str(h5), "--format", "tflite",
            "-o", str(folder / "b.tflite"), "-q")),
    ]  # fmt: skip
    for label, argv in steps:
        wall, kib, code, err = measure(argv)
        print(row(label, wall, kib, "" if code == 0 else f"exit {code}: {err[-200:]}"))


if __name__ == "__main__":
    main()
