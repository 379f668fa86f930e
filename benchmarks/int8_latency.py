"""Latency of float32 against int8 for the generated MobileNetV3-Small (width 0.5, ten
classes), as deployed: PyTorch through PT2E (XNNPACKQuantizer) lowered to ExecuTorch's
XNNPACK backend, Keras through TFLite full-integer conversion run by LiteRT (its
XNNPACK delegate is on by default). The quantization code is tests/int8.py's.

Each runtime runs in its own process (torch is never timed in a process that has
imported tensorflow; the LiteRT timings import only ai_edge_litert), with the given
number of threads, float32 and int8 round-robin on the same input. Calibration uses
the synthetic task's training images at 64x64 and uniform noise at other resolutions;
weights are the spec's initialisation (latency does not depend on their values).

`--activation relu` puts ReLU in place of every hard-swish (README, "int8"). The
LiteRT table also gives how many XNNPACK partitions each graph runs in.

Target: int8 ≥ 1.8x faster than float32.

    python benchmarks/int8_latency.py [--resolution 64 224] [--batch 1 8]
        [--threads 2] [--repeats 9] [--activation relu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import NOISE_NOTE, ROOT, header, interleaved

sys.path.insert(0, str(ROOT / "tests"))

TARGET = 1.8
CALIBRATION_IMAGES = 200
RELU = (
    "all_rows.act=relu",
    "stem.act=relu",
    "head.conv.act=relu",
    "head.hidden.act=relu",
)


def build(framework: str, resolution: int, directory: Path, activation: str):
    import synthetic_task as task_module

    from mbcompile import compiler

    kept = [o for o in task_module.OVERRIDES if not o.startswith("resolution=")]
    overrides = (*kept, f"resolution={resolution}")
    if activation == "relu":
        overrides += RELU
    _, graph = compiler.load_and_expand(task_module.SPEC, overrides)
    module = task_module.import_source(
        compiler.generate(graph, framework), directory, f"int8_{framework}_{resolution}"
    )
    return module.build_model(num_classes=task_module.CLASSES)


def calibration(resolution: int, batch: int):
    """NCHW float32 batches in [-1, 1]."""
    import numpy as np
    import synthetic_task as task_module

    if resolution == task_module.RESOLUTION:
        images, _ = task_module.images(CALIBRATION_IMAGES, task_module.TRAIN_SEED)
    else:
        rng = np.random.default_rng(0)
        shape = (CALIBRATION_IMAGES, 3, resolution, resolution)
        images = rng.uniform(-1, 1, shape).astype(np.float32)
    return [images[i : i + batch] for i in range(0, len(images), batch)]


def per_call(fn, seconds_hint: float):
    """A callable that runs `fn` enough times to take a measurable time."""
    calls = max(1, int(0.05 / max(seconds_hint, 1e-5)))

    def run():
        for _ in range(calls):
            fn()

    return run, calls


def time_pair(candidates: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """{name: (min, median) seconds per call}, float32 and int8 round-robin."""
    import time

    hints = {}
    for name, fn in candidates.items():
        fn()
        start = time.perf_counter()
        fn()
        hints[name] = time.perf_counter() - start
    hint = min(hints.values())
    looped = {name: per_call(fn, hint) for name, fn in candidates.items()}
    stats = interleaved({n: run for n, (run, _) in looped.items()}, repeats, warmup=1)
    return {
        name: (stats[name].low / looped[name][1], stats[name].median / looped[name][1])
        for name in candidates
    }


def torch_child(args, out: Path) -> None:
    import numpy as np
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from int8 import ExecuTorchModel, pt2e_quantize, xnnpack_program

    torch.set_num_threads(args.threads)
    _unsafe_reset_threadpool(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for resolution in args.resolution:
            torch.manual_seed(0)
            model = build("torch", resolution, Path(directory), args.activation)
            model.eval()
            for batch in args.batch:
                # Static batch: ExecuTorch's dynamic batch caps the input's capacity.
                batches = calibration(resolution, batch)
                example = batches[0]
                quantized = pt2e_quantize(model, example, batches)
                programs = {
                    "float32": xnnpack_program(model, example),
                    "int8": xnnpack_program(quantized, example),
                }
                runners = {k: ExecuTorchModel(v[0]) for k, v in programs.items()}
                x = np.ascontiguousarray(example)
                times = time_pair(
                    {k: (lambda r=r, x=x: r(x)) for k, r in runners.items()},
                    args.repeats,
                )
                for kind, (_, partitions, _) in programs.items():
                    times[f"{kind} partitions"] = partitions
                results[f"{resolution}/{batch}"] = times
                print(f"  torch {resolution}px batch {batch}: done", file=sys.stderr)
    out.write_text(json.dumps(results))


def tflite_convert_child(args, directory: Path) -> None:
    import keras
    import numpy as np

    from mbcompile.export.formats import keras_to_tflite

    with tempfile.TemporaryDirectory() as sources:
        for resolution in args.resolution:
            keras.utils.set_random_seed(0)
            model = build("keras", resolution, Path(sources), args.activation)
            nhwc = [
                np.ascontiguousarray(b.transpose(0, 2, 3, 1))
                for b in calibration(resolution, 8)
            ]
            (directory / f"{resolution}_float32.tflite").write_bytes(
                keras_to_tflite(model)
            )
            (directory / f"{resolution}_int8.tflite").write_bytes(
                keras_to_tflite(model, calibration=np.concatenate(nhwc))
            )
            print(f"  tflite {resolution}px: converted", file=sys.stderr)


def tflite_time_child(args, directory: Path, out: Path) -> None:
    import numpy as np
    from int8 import TFLiteModel

    results = {}
    for resolution in args.resolution:
        for batch in args.batch:
            x = np.random.default_rng(0).uniform(
                -1, 1, (batch, resolution, resolution, 3)
            )
            x = x.astype(np.float32)
            runners = {}
            for kind in ("float32", "int8"):
                flatbuffer = (directory / f"{resolution}_{kind}.tflite").read_bytes()
                runner = TFLiteModel(flatbuffer, batch, num_threads=args.threads)
                runner.set_input(x)
                runners[kind] = runner
            times = time_pair({k: r.invoke for k, r in runners.items()}, args.repeats)
            for kind, runner in runners.items():
                times[f"{kind} partitions"] = runner.xnnpack_partitions()
            results[f"{resolution}/{batch}"] = times
    out.write_text(json.dumps(results))


def run_child(mode: str, args, *extra: str) -> None:
    command = [sys.executable, __file__, "--child", mode, *extra]
    command += ["--resolution", *map(str, args.resolution)]
    command += ["--batch", *map(str, args.batch)]
    command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    command += ["--activation", args.activation]
    # The children's figures come back as JSON; their standard output is only the
    # converter's listing of the SavedModel it writes on the way.
    subprocess.run(
        command,
        check=True,
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        stdout=subprocess.DEVNULL,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--activation", choices=("as-spec", "relu"), default="as-spec")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "torch":
        torch_child(args, args.dir / "torch.json")
        return 0
    if args.child == "tflite-convert":
        tflite_convert_child(args, args.dir)
        return 0
    if args.child == "tflite-time":
        tflite_time_child(args, args.dir, args.dir / "tflite.json")
        return 0

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        run_child("torch", args, "--dir", name)
        run_child("tflite-convert", args, "--dir", name)
        run_child("tflite-time", args, "--dir", name)
        results = {
            "PyTorch PT2E -> ExecuTorch XNNPACK": json.loads(
                (directory / "torch.json").read_text()
            ),
            "Keras -> TFLite full-integer, LiteRT": json.loads(
                (directory / "tflite.json").read_text()
            ),
        }
    for runtime, table in results.items():
        header(f"{runtime}, {args.threads} threads (ms per call, min / median)")
        print(f"{'case':>14} {'float32':>17} {'int8':>17}  speed-up (min, median)")
        for case, times in table.items():
            resolution, batch = case.split("/")
            f_min, f_med = times["float32"]
            i_min, i_med = times["int8"]
            ratio = f_min / i_min
            mark = "meets" if ratio >= TARGET else "MISSES"
            partitions = ""
            if "int8 partitions" in times:
                partitions = (
                    f"  XNNPACK partitions {times['float32 partitions']} / "
                    f"{times['int8 partitions']}"
                )
            print(
                f"{resolution + 'px b' + batch:>14} {f_min * 1e3:8.3f} / {f_med * 1e3:6.3f}"
                f" {i_min * 1e3:8.3f} / {i_med * 1e3:6.3f}  {ratio:.2f}x, "
                f"{f_med / i_med:.2f}x ({mark} ≥ {TARGET}x){partitions}"
            )
    print(NOISE_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
