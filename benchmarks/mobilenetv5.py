"""MobileNetV5's 300M encoder (Gemma 3n's image encoder) at 768x768 against timm.

On demand (minutes and ~6 GB on 2 cores; the test suite checks these models on the
meta device and a tiny MobileNetV5 in full): timm's mobilenetv5_300m_enc with random
weights (RMSNorm weights too, tests/helpers.randomize_torch) and the models
generated from specs/timm/mobilenetv5_300m_enc.yaml —

1. costs: trainable parameters, MACs (attention's two products included) and
   peak activation memory from `mbcompile costs`, against timm's own parameter
   count and MACs counted by forward hooks on its modules
   (tests/reference_models.count_macs, on the meta device);
2. PyTorch: timm's state_dict loads strictly; the 16x16x2048 feature maps of the
   same images agree (max-abs-diff / max(1, |timm's|), the suite's TOLERANCE);
3. Keras: the state_dict converted by `mbcompile weights`, the Keras model's maps
   (NHWC) against timm's;
4. latency, batch 1, `--threads` threads: eager PyTorch (generated and timm's,
   round-robin) and TFLite float32 run by LiteRT (XNNPACK), its output checked;
5. with `--export-base`: mobilenetv5_base (random weights) through ONNX (the dynamo
   exporter, run by onnxruntime) and TFLite, at its own 256x256, checked against
   eager.

    python benchmarks/mobilenetv5.py [--resolution 768] [--threads 2]
        [--repeats 5] [--skip-keras] [--export-base]

Prints a Markdown summary at the end (docs/mobilenetv5.md quotes one). timm is
imported through tests/reference_models.py; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import NOISE_NOTE, ROOT, SPECS, header, import_source, interleaved

sys.path.insert(0, str(ROOT / "tests"))
from helpers import TOLERANCE, difference, randomize_torch  # the suite's tolerance
from reference_models import count_macs, create

ENCODER = SPECS / "timm" / "mobilenetv5_300m_enc.yaml"
BASE = SPECS / "timm" / "mobilenetv5_base.yaml"


def images(resolution: int, batch: int = 1, seed: int = 1):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, resolution, resolution)).astype(np.float32)


def torch_pair(spec: Path, name: str, overrides: list[str], workdir: Path):
    """(graph, timm's model with random weights, the generated one with its
    state_dict), both built on the meta device and filled, in eval mode."""
    import torch

    from mbcompile import compiler

    _, graph = compiler.load_and_expand(spec, overrides)
    module = import_source(compiler.generate(graph, "torch"), workdir, name)
    with torch.device("meta"):
        reference, ours = create(name), module.build_model()
    reference.to_empty(device="cpu")
    resolution = graph.network.resolution
    randomize_torch(reference, images(resolution, seed=7), seed=7)
    ours.to_empty(device="cpu").load_state_dict(reference.state_dict(), strict=True)
    return graph, reference.eval(), ours.eval()


def run_torch(model, x):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def check(label: str, reference, other, summary: list[str]) -> None:
    diff = difference(reference, other)
    verdict = "within" if diff <= TOLERANCE else "OVER"
    line = f"{label}: max-abs-diff / max(1, |ref|) = {diff:.3g} ({verdict} {TOLERANCE})"
    print(line)
    summary.append(line)


def costs(graph, resolution: int, summary: list[str]) -> None:
    """mbcompile's counts against timm's, whose MACs its forward hooks count on
    the meta device (shapes only)."""
    import torch

    from mbcompile import compiler

    header("costs")
    report = compiler.cost_report(graph)
    with torch.device("meta"):
        reference = create("mobilenetv5_300m_enc")
    params = sum(p.numel() for p in reference.parameters())
    macs = count_macs(reference, resolution)
    peak = report.peak_activation_elements
    rows = [
        ("trainable parameters", f"{report.trainable_params:,}", f"{params:,}"),
        ("MACs", f"{report.macs:,}", f"{macs:,}"),
        (
            "peak activations (float32)",
            f"{peak:,} elements, {peak * 4 / 2**20:.0f} MiB",
            "—",
        ),
    ]
    summary += ["| | mbcompile costs | timm |", "|---|---:|---:|"]
    summary += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    for line in summary[-len(rows) - 2 :]:
        print(line)


def keras_check(graph, state_path: Path, want, x, workdir: Path, summary) -> object:
    """The Keras model given timm's weights by `mbcompile weights`; its maps
    checked against timm's. Returns the model (for TFLite)."""
    import numpy as np

    from helpers import run_cli
    from mbcompile import compiler

    header("Keras through mbcompile weights")
    target = workdir / "encoder.weights.h5"
    start = time.perf_counter()
    argv = ["weights", ENCODER, "--from", state_path, "--to", target]
    code, _, err = run_cli(argv)
    if code:
        raise SystemExit(err)
    print(f"mbcompile weights: {time.perf_counter() - start:.0f} s")
    module = import_source(compiler.generate(graph, "keras"), workdir, "keras_enc")
    model = module.build_model()
    model.load_weights(target)
    got = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    check("Keras vs timm", want, got.transpose(0, 3, 1, 2), summary)
    return model


def torch_latency(args, reference, ours, x) -> dict:
    """Eager PyTorch, generated and timm's, round-robin; before anything imports
    TensorFlow (whose thread pools slow torch down ~10x on 2 cores)."""
    import torch

    header(f"PyTorch latency, batch 1, {args.threads} threads")
    torch.set_num_threads(args.threads)
    t = torch.from_numpy(x)

    def run(model):
        def call():
            with torch.no_grad():
                model(t)

        return call

    return interleaved(
        {
            "PyTorch eager (generated)": run(ours),
            "PyTorch eager (timm)": run(reference),
        },
        repeats=args.repeats,
        warmup=1,
    )


def tflite_latency(args, stats, keras_model, x, want, summary) -> None:
    """TFLite float32 of the Keras model, run by LiteRT; then the table of all."""
    import numpy as np

    if keras_model is not None:
        header(f"TFLite latency, batch 1, {args.threads} threads")
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        start = time.perf_counter()
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
        print(
            f"TFLite conversion: {time.perf_counter() - start:.0f} s, "
            f"{len(flatbuffer) / 2**20:.0f} MiB"
        )
        interpreter = Interpreter(model_content=flatbuffer, num_threads=args.threads)
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

        def lite():
            interpreter.set_tensor(inp["index"], nhwc)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])

        check("TFLite (LiteRT) vs timm", want, lite().transpose(0, 3, 1, 2), summary)
        stats |= interleaved({"TFLite float32 (LiteRT)": lite}, args.repeats, 1)
    summary += ["", "| runtime | batch 1 latency |", "|---|---:|"]
    for name, stat in stats.items():
        print(f"{name:28s} {stat.ms()}")
        summary.append(
            f"| {name} | {stat.median:.2f} s (IQR {stat.q1:.2f}–{stat.q3:.2f}, n={stat.n}) |"
        )


def export_base(workdir: Path, summary: list[str]) -> None:
    """mobilenetv5_base through ONNX and TFLite at its 256x256."""
    import numpy as np
    import onnxruntime
    import torch

    from helpers import port_torch_to_keras
    from mbcompile import compiler

    header("mobilenetv5_base export")
    graph, _, model = torch_pair(BASE, "mobilenetv5_base", [], workdir)
    x = images(graph.network.resolution, batch=2, seed=3)
    want = run_torch(model, x)
    path = workdir / "base.onnx"
    start = time.perf_counter()
    program = torch.onnx.export(
        model, (torch.from_numpy(x),), dynamo=True, input_names=["images"]
    )
    program.save(str(path))
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, {"images": x})
    print(f"ONNX export and run: {time.perf_counter() - start:.0f} s")
    check("mobilenetv5_base ONNX (onnxruntime) vs eager", want, got, summary)

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    module = import_source(compiler.generate(graph, "keras"), workdir, "keras_base")
    keras_model = module.build_model()
    port_torch_to_keras(graph, model, keras_model)
    start = time.perf_counter()
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    interpreter = Interpreter(model_content=flatbuffer)
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    runner = interpreter.get_signature_runner()
    (got,) = runner(**{name: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}).values()
    print(f"TFLite conversion and run: {time.perf_counter() - start:.0f} s")
    check("mobilenetv5_base TFLite (LiteRT) vs eager", want, got, summary)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-keras", action="store_true")
    parser.add_argument("--export-base", action="store_true")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    summary = [
        f"mobilenetv5_300m_enc at {args.resolution}x{args.resolution}, "
        f"{args.threads} threads, load average {load:.1f} on {os.cpu_count()} CPUs "
        "when it started",
        "",
    ]
    overrides = [f"resolution={args.resolution}"]
    with tempfile.TemporaryDirectory(prefix="mnv5-bench-") as name:
        workdir = Path(name)
        header("building timm's model and the generated one")
        start = time.perf_counter()
        graph, reference, ours = torch_pair(
            ENCODER, "mobilenetv5_300m_enc", overrides, workdir
        )
        print(f"built and randomised in {time.perf_counter() - start:.0f} s")
        costs(graph, args.resolution, summary)
        header("PyTorch")
        x = images(args.resolution)
        want = run_torch(reference, x)
        assert want.shape == (1, 2048, 16, 16) or args.resolution != 768, want.shape
        check("PyTorch (generated) vs timm", want, run_torch(ours, x), summary)
        stats = torch_latency(args, reference, ours, x)
        keras_model = None
        if not args.skip_keras:
            state = workdir / "encoder.pt"
            torch.save(reference.state_dict(), state)
            keras_model = keras_check(graph, state, want, x, workdir, summary)
            state.unlink()
        tflite_latency(args, stats, keras_model, x, want, summary)
        del reference, ours, keras_model
        gc.collect()
        if args.export_base:
            export_base(workdir, summary)
    header("summary (Markdown)")
    print("\n".join(summary))
    print(f"\n{NOISE_NOTE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
