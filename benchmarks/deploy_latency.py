"""Deploy latency of the generated canonical MobileNets: which runtime runs each
fastest on the CPU, at batch 1 and 8, with the same number of threads everywhere.

Runtimes (generated/torch/<spec>.py and generated/keras/<spec>.py, 224x224):

- PyTorch eager, contiguous and channels_last (`torch.inference_mode()`);
- torch.compile (inductor, static shapes, one compile per batch size), with and
  without `freezing` (inductor's documented option for CPU inference: weights become
  constants, convolutions are pre-packed for oneDNN and batch norm is folded);
- ONNX Runtime (CPUExecutionProvider, ORT_ENABLE_ALL) on the dynamo exporter's
  .onnx with a dynamic batch;
- Keras on TensorFlow: eager `model(x, training=False)`, the same call in
  `tf.function`, and `model.predict_on_batch`;
- TFLite float32 (`TFLiteConverter.from_keras_model`) run by LiteRT with its
  default XNNPACK delegate (the number of XNNPACK partitions is printed).

The PyTorch family (ONNX Runtime included) runs in one child process and the
TensorFlow family in another: torch is never timed in a process that has imported
tensorflow (their thread pools fight). Within a child the runtimes are timed
round-robin on the same input (`_common.interleaved`). Each turn first calls the
runtime untimed for --settle-ms (100 ms), then times one call: every runtime keeps
its own worker threads, which spin for a while after a call (ONNX Runtime's for
tens of ms), and a call made while another runtime's threads still spin shares the
two cores with them. Measured here for V2 at batch 1, alone against interleaved
with each other: PyTorch eager 12 against 17-30 ms, ONNX Runtime 3.9 against
5-8 ms without settling; with 100 ms of settling, 12 and 3.9 ms either way.
Figures are medians (and minima in the JSON) of one timed call each turn; a call
takes a ready input in the runtime's own format and returns the logits (TFLite:
set_tensor, invoke, get_tensor). One-off costs (export, compile, conversion, the
first call of a tf.function) are printed separately; torch.compile starts from an
empty inductor cache, and its later compiles reuse kernels the earlier ones built.

Every runtime's logits are checked against its framework's eager logits on the
timed input: |difference| ≤ 1e-4 × max(1, |logit|) elementwise; a mismatch is
printed loudly and the runtime is left out of "fastest". A runtime that fails on a
spec is a FAILED cell with the error's first line.

Weights are random, never downloaded. `--init calibrated` (default) is the test
suite's randomisation (tests/helpers.py): random kernels and batch-norm statistics
measured on a random batch, so activations stay near unit scale as in a trained
network. With `--init default` (each framework's initialisers) the logits of
these networks are 1e-19 to 1e-9, which every runtime "matches" within 1e-4.

Target: none; the table names the fastest deploy path per spec and batch size.

    python benchmarks/deploy_latency.py [--specs v2 v3_small] [--batch 1 8]
        [--repeats N] [--threads 2] [--settle-ms 100] [--init calibrated]
        [--plot deploy_latency.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from _common import (
    CANONICAL,
    NOISE_NOTE,
    ROOT,
    Stats,
    header,
    import_source,
    interleaved,
)

sys.path.insert(0, str(ROOT / "tests"))
from helpers import TOLERANCE, difference  # the suite's one tolerance

RESOLUTION = 224
EXPORT_BATCH = 2  # torch.export specialises a batch of 1; the .onnx batch is dynamic

TORCH_EAGER = "PyTorch eager"
TORCH_CHANNELS_LAST = "PyTorch eager channels_last"
TORCH_COMPILE = "torch.compile"
TORCH_FREEZING = "torch.compile freezing"
ONNX_RUNTIME = "ONNX Runtime"
KERAS_EAGER = "Keras eager"
KERAS_FUNCTION = "Keras tf.function"
KERAS_PREDICT = "Keras predict_on_batch"
TFLITE = "TFLite XNNPACK"
FAMILIES = {
    "torch": (
        TORCH_EAGER,
        TORCH_CHANNELS_LAST,
        TORCH_COMPILE,
        TORCH_FREEZING,
        ONNX_RUNTIME,
    ),
    "tf": (KERAS_EAGER, KERAS_FUNCTION, KERAS_PREDICT, TFLITE),
}
RUNTIMES = FAMILIES["torch"] + FAMILIES["tf"]
REFERENCE = {"torch": TORCH_EAGER, "tf": KERAS_EAGER}


# ----------------------------------------------------------------- both children


def images(batch: int):
    """The same NCHW float32 batch for every runtime of both families."""
    import numpy as np

    rng = np.random.default_rng(batch)
    return rng.standard_normal((batch, 3, RESOLUTION, RESOLUTION)).astype(np.float32)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def as_array(value):
    import numpy as np

    if isinstance(value, (list, tuple)):
        (value,) = value
    if hasattr(value, "detach"):
        value = value.detach()
    return np.asarray(value)


def worst_difference(output, reference) -> float:
    """The test suite's measure (`helpers.difference`: at most `helpers.TOLERANCE`
    to agree) of a runtime's output, whatever its container."""
    output, reference = as_array(output), as_array(reference)
    if output.shape != reference.shape:
        return float("inf")
    return difference(reference, output)


def settled_round_robin(
    candidates: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    settle: float,
) -> dict[str, Stats]:
    """`_common.interleaved` round-robin in which each turn first calls the
    candidate untimed for at least `settle` seconds (at least once), so that the
    previous runtime's worker threads have stopped spinning, then times one call.
    The warm-up turns' samples are dropped."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}

    def turn(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            start = time.perf_counter()
            fn()
            while time.perf_counter() - start < settle:
                fn()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)

        return run

    interleaved({n: turn(n, fn) for n, fn in candidates.items()}, repeats, warmup)
    return {name: Stats.of(values[warmup:]) for name, values in samples.items()}


class Report:
    """What a child measured, as JSON: per spec and batch, each runtime's timing
    and worst difference, or its error; one-off costs; notes on the graphs."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, dict[str, dict]]] = {}
        self.prepare: dict[str, dict[str, float]] = {}
        self.notes: dict[str, dict[str, object]] = {}

    def cell(self, spec: str, batch: int, runtime: str) -> dict:
        per_batch = self.results.setdefault(spec, {}).setdefault(str(batch), {})
        return per_batch.setdefault(runtime, {})

    def fail_all(self, spec: str, args, runtimes, exc: BaseException) -> None:
        """Every runtime of a family failed on `spec` (its model did not build)."""
        for batch in args.batch:
            for runtime in runtimes:
                self.fail(spec, batch, runtime, exc)

    def fail(self, spec: str, batch: int, runtime: str, exc: BaseException) -> None:
        self.cell(spec, batch, runtime)["error"] = first_line(exc)
        print(f"  {spec} b{batch} {runtime}: FAILED {first_line(exc)}", file=sys.stderr)

    def timed(self, spec: str, label: str, fn: Callable[[], object]):
        """fn() with its wall time recorded as a one-off cost; its warnings noted."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            value = fn()
            self.prepare.setdefault(spec, {})[label] = time.perf_counter() - start
        messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        if messages:
            noted = self.notes.setdefault(spec, {}).setdefault("warnings", {})
            noted[label] = [m.splitlines()[0][:160] for m in messages]
        return value

    def note(self, spec: str, key: str, value) -> None:
        self.notes.setdefault(spec, {})[key] = value

    def measure(
        self,
        spec: str,
        batch: int,
        builders: dict[str, Callable[[], Callable[[], object]]],
        reference,
        args,
    ) -> None:
        """Build each runtime's call, check its logits, then time the ones that
        run, round-robin."""
        calls = {}
        for runtime, build in builders.items():
            try:
                call = build()
                diff = worst_difference(call(), reference)
            except Exception as exc:
                self.fail(spec, batch, runtime, exc)
                continue
            self.cell(spec, batch, runtime).update(diff=diff, ok=diff <= TOLERANCE)
            calls[runtime] = call
        if not calls:
            return
        try:
            stats = settled_round_robin(
                calls, repeats_for(args, batch), args.warmup, args.settle_ms / 1e3
            )
        except Exception as exc:
            for runtime in calls:
                self.fail(spec, batch, runtime, exc)
            return
        for runtime, s in stats.items():
            self.cell(spec, batch, runtime).update(
                median=s.median, min=s.low, q1=s.q1, q3=s.q3, n=s.n
            )
        print(f"  {spec} batch {batch}: timed {', '.join(calls)}", file=sys.stderr)

    def as_json(self, meta: dict) -> dict:
        return {
            "meta": meta,
            "results": self.results,
            "prepare": self.prepare,
            "notes": self.notes,
        }


def repeats_for(args, batch: int) -> int:
    if args.repeats:
        return args.repeats
    return 50 if batch == 1 else 20


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, CPU seconds of this
    process's finished children), where /proc/stat exists."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, children.ru_utime + children.ru_stime


# ------------------------------------------------------------------ torch child


def torch_model(spec: str, directory: Path, init: str):
    import numpy as np
    import torch

    torch.manual_seed(0)
    source = (ROOT / "generated" / "torch" / f"{spec}.py").read_text()
    model = import_source(source, directory, f"deploy_{spec}").build_model()
    if init == "calibrated":
        from helpers import randomize_torch

        rng = np.random.default_rng(0)
        shape = (2, 3, RESOLUTION, RESOLUTION)
        randomize_torch(model, rng.standard_normal(shape).astype(np.float32))
    return model.eval()


def onnx_session(model, spec: str, directory: Path, threads: int, report: Report):
    import onnx
    import onnxruntime as ort
    import torch

    path = directory / f"{spec}.onnx"
    example = torch.from_numpy(images(EXPORT_BATCH))

    def export() -> None:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
            input_names=["images"],
            output_names=["logits"],
        )
        program.save(str(path))

    report.timed(spec, "ONNX export (dynamo)", export)
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    report.note(spec, "onnx_ops", dict(sorted(ops.items())))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return report.timed(
        spec,
        "ONNX Runtime session",
        lambda: ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        ),
    )


def inference(fn, x):
    """A call of `fn(x)` under torch.inference_mode."""
    import torch

    def run():
        with torch.inference_mode():
            return fn(x)

    return run


def torch_builders(report: Report, spec: str, batch: int, model, session, x):
    """{runtime: build}, each build returning the runtime's call on x (NCHW).
    `session` is the ONNX Runtime session, or the exception that prevented it."""
    import torch

    def channels_last():
        fmt = torch.channels_last
        moved = copy.deepcopy(model).to(memory_format=fmt)
        return inference(moved, x.contiguous(memory_format=fmt))

    def compiled(label: str, **options):
        def build():
            # A copy each, so no compiled variant reuses another's dynamo cache.
            fn = torch.compile(copy.deepcopy(model), dynamic=False, **options)
            run = inference(fn, x)
            report.timed(spec, f"{label} b{batch} (first call)", run)
            return run

        return build

    def onnx_runtime():
        if isinstance(session, BaseException):
            raise session
        feed = {"images": x.numpy()}
        return lambda: session.run(["logits"], feed)[0]

    return {
        TORCH_EAGER: lambda: inference(model, x),
        TORCH_CHANNELS_LAST: channels_last,
        TORCH_COMPILE: compiled(TORCH_COMPILE),
        TORCH_FREEZING: compiled(TORCH_FREEZING, options={"freezing": True}),
        ONNX_RUNTIME: onnx_runtime,
    }


def torch_child(args) -> dict:
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    report = Report()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for spec in args.specs:
            try:
                model = torch_model(spec, directory, args.init)
            except Exception as exc:
                report.fail_all(spec, args, FAMILIES["torch"], exc)
                continue
            try:
                session = onnx_session(model, spec, directory, args.threads, report)
            except Exception as exc:
                session = exc
            for batch in args.batch:
                x = torch.from_numpy(images(batch))
                with torch.inference_mode():
                    reference = model(x).numpy()
                builders = torch_builders(report, spec, batch, model, session, x)
                report.measure(spec, batch, builders, reference, args)
    meta = {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    return report.as_json(meta)


# --------------------------------------------------------------------- tf child


def keras_model(spec: str, directory: Path, init: str):
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    source = (ROOT / "generated" / "keras" / f"{spec}.py").read_text()
    model = import_source(source, directory, f"deploy_{spec}").build_model()
    if init == "calibrated":
        from helpers import randomize_keras

        rng = np.random.default_rng(0)
        shape = (2, RESOLUTION, RESOLUTION, 3)
        randomize_keras(model, rng.standard_normal(shape).astype(np.float32))
    return model


def tflite_call(flatbuffer: bytes, x, threads: int):
    """(call, XNNPACK partitions) for a LiteRT interpreter resized to x's batch."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    ops = interpreter._get_ops_details()
    partitions = sum(op["op_name"] == "DELEGATE" for op in ops)

    def run():
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run, partitions


def keras_builders(report: Report, args, spec: str, batch: int, model, lite, x):
    """{runtime: build}, each build returning the runtime's call on x (NHWC
    numpy). `lite` is the TFLite flatbuffer, or the exception that prevented it."""
    import tensorflow as tf

    tensor = tf.constant(x)
    graph = tf.function(lambda t: model(t, training=False))

    def function():
        report.timed(spec, f"{KERAS_FUNCTION} b{batch} (trace)", lambda: graph(tensor))
        return lambda: graph(tensor)

    def predict():
        label = f"{KERAS_PREDICT} b{batch} (first call)"
        report.timed(spec, label, lambda: model.predict_on_batch(x))
        return lambda: model.predict_on_batch(x)

    def tflite():
        if isinstance(lite, BaseException):
            raise lite
        run, partitions = tflite_call(lite, x, args.threads)
        report.note(spec, f"xnnpack_partitions_b{batch}", partitions)
        if not partitions:
            raise RuntimeError("the XNNPACK delegate took no part of the graph")
        return run

    return {
        KERAS_EAGER: lambda: lambda: model(tensor, training=False),
        KERAS_FUNCTION: function,
        KERAS_PREDICT: predict,
        TFLITE: tflite,
    }


def tflite_flatbuffer(model, spec: str, report: Report) -> bytes:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flatbuffer = report.timed(spec, "TFLite conversion", converter.convert)
    ops = Interpreter(model_content=flatbuffer)._get_ops_details()
    counts = Counter(op["op_name"] for op in ops)
    report.note(spec, "tflite_ops", dict(sorted(counts.items())))
    return flatbuffer


def tf_child(args) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import ai_edge_litert
    import keras
    import numpy as np

    report = Report()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for spec in args.specs:
            try:
                model = keras_model(spec, directory, args.init)
            except Exception as exc:
                report.fail_all(spec, args, FAMILIES["tf"], exc)
                continue
            try:
                lite = tflite_flatbuffer(model, spec, report)
            except Exception as exc:
                lite = exc
            for batch in args.batch:
                x = np.ascontiguousarray(images(batch).transpose(0, 2, 3, 1))
                reference = model(tf.constant(x), training=False).numpy()
                builders = keras_builders(report, args, spec, batch, model, lite, x)
                report.measure(spec, batch, builders, reference, args)
    meta = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "torch_imported": "torch" in sys.modules,
    }
    return report.as_json(meta)


# ------------------------------------------------------------------------ main


def run_child(family: str, args, directory: Path) -> dict:
    """The child's JSON, or every cell of its family FAILED with the reason."""
    out = directory / f"{family}.json"
    command = [sys.executable, __file__, "--child", family, "--out", str(out)]
    command += ["--specs", *args.specs, "--batch", *map(str, args.batch)]
    command += ["--threads", str(args.threads), "--warmup", str(args.warmup)]
    command += ["--settle-ms", str(args.settle_ms)]
    command += ["--init", args.init]
    if args.repeats:
        command += ["--repeats", str(args.repeats)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    # A cold inductor cache of our own: compile times are a first compile's.
    env["TORCHINDUCTOR_CACHE_DIR"] = str(directory / "inductor")
    load, cpu = load_avg(), cpu_seconds()
    start = time.perf_counter()
    # Figures come back in the JSON file; standard output is only exporters' and
    # converters' progress listings. Warnings and progress go to standard error.
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if done.returncode == 0:
        data = json.loads(out.read_text())
    else:
        error = {"error": f"{family} child process exited with {done.returncode}"}
        cells = {str(b): {r: dict(error) for r in FAMILIES[family]} for b in args.batch}
        data = {"meta": {}, "results": dict.fromkeys(args.specs, cells)}
    data["meta"].update(seconds=seconds, load_before=load, load_after=load_avg())
    if cpu and (after := cpu_seconds()):
        # The machine's busy CPU time less our child's: other processes' share.
        other = (after[0] - cpu[0]) - (after[1] - cpu[1])
        data["meta"]["other_cpu_seconds"] = max(0.0, other)
    return data


def merge(children: dict[str, dict]) -> dict:
    merged = {"meta": {}, "results": {}, "prepare": {}, "notes": {}}
    for family, data in children.items():
        merged["meta"][family] = data["meta"]
        for key in ("results", "prepare", "notes"):
            for spec, values in data.get(key, {}).items():
                target = merged[key].setdefault(spec, {})
                if key == "results":
                    for batch, cells in values.items():
                        target.setdefault(batch, {}).update(cells)
                else:
                    target.update(values)
    return merged


def fastest(cells: dict[str, dict]) -> str | None:
    """The runtime with the smallest median among those whose logits agree."""
    good = {r: c["median"] for r, c in cells.items() if c.get("ok") and "median" in c}
    return min(good, key=good.get) if good else None


def print_tables(data: dict, specs: list[str], batches: list[int]) -> list[str]:
    """The tables; returns the loud lines (failures, mismatches) for the end."""
    alarms = []
    width = 16
    row = f"{'runtime':28s}" + "".join(f"{s:>{width}}" for s in specs)
    for batch in batches:
        per_spec = {s: data["results"].get(s, {}).get(str(batch), {}) for s in specs}
        best = {s: fastest(per_spec[s]) for s in specs}
        header(f"batch {batch}: median ms per call (×: ratio to the spec's fastest)")
        print(row)
        for runtime in RUNTIMES:
            cells = []
            for spec in specs:
                cell = per_spec[spec].get(runtime, {})
                if "error" in cell:
                    cells.append("FAILED")
                    alarms.append(
                        f"FAILED {runtime}, {spec}, b{batch}: {cell['error']}"
                    )
                    continue
                if "median" not in cell:
                    cells.append("-")
                    continue
                text = f"{cell['median'] * 1e3:.2f}"
                if best[spec]:
                    text += (
                        f" ×{cell['median'] / per_spec[spec][best[spec]]['median']:.2f}"
                    )
                if not cell["ok"]:
                    text += " !"
                    alarms.append(
                        f"MISMATCH {runtime}, {spec}, b{batch}: worst difference "
                        f"{cell['diff']:.2e} > {TOLERANCE} (timed, not ranked)"
                    )
                cells.append(text)
            print(f"{runtime:28s}" + "".join(f"{c:>{width}}" for c in cells))
        print(
            f"{'fastest':28s}" + "".join(f"{b or '-':>{width}}" for b in best.values())
        )

        header(f"batch {batch}: worst |Δlogits| / max(1, |logit|) vs the eager logits")
        print(row)
        for runtime in RUNTIMES:
            cells = []
            for spec in specs:
                cell = per_spec[spec].get(runtime, {})
                if runtime in REFERENCE.values() and "diff" in cell:
                    cells.append("(reference)")
                elif "diff" in cell:
                    mark = "" if cell["ok"] else " MISMATCH"
                    cells.append(f"{cell['diff']:.1e}{mark}")
                else:
                    cells.append("-")
            print(f"{runtime:28s}" + "".join(f"{c:>{width}}" for c in cells))
    return alarms


def print_prepare(data: dict, specs: list[str]) -> None:
    header("one-off costs, seconds")
    steps = []
    for spec in specs:
        steps += [s for s in data["prepare"].get(spec, {}) if s not in steps]
    print(f"{'step':40s}" + "".join(f"{s:>10}" for s in specs))
    for step in steps:
        values = [data["prepare"].get(spec, {}).get(step) for spec in specs]
        cells = [f"{v:.1f}" if v is not None else "-" for v in values]
        print(f"{step:40s}" + "".join(f"{c:>10}" for c in cells))


def print_notes(data: dict, specs: list[str]) -> None:
    header("graphs")
    for spec in specs:
        notes = data["notes"].get(spec, {})
        onnx_ops = notes.get("onnx_ops", {})
        lite_ops = notes.get("tflite_ops", {})
        partitions = {k: v for k, v in notes.items() if k.startswith("xnnpack")}
        print(
            f"{spec}: ONNX {sum(onnx_ops.values())} nodes "
            f"({onnx_ops.get('Conv', 0)} Conv, "
            f"{onnx_ops.get('BatchNormalization', 0)} BatchNormalization); "
            f"TFLite {sum(lite_ops.values())} ops; XNNPACK partitions "
            + ", ".join(f"{k.rsplit('_', 1)[1]} {v}" for k, v in partitions.items())
        )
        for step, messages in notes.get("warnings", {}).items():
            for message in messages:
                print(f"  warning during {step}: {message}")


def plot(data: dict, specs: list[str], batches: list[int], path: Path) -> None:
    """Grouped bars, one panel per batch size: per spec, one bar per runtime with
    its median; hatched when its logits disagree, absent when it failed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.rcParams["svg.hashsalt"] = "deploy_latency"  # deterministic SVG ids
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(
        len(batches), 1, figsize=(12, 4.2 * len(batches) + 0.8), squeeze=False
    )
    width = 0.9 / len(RUNTIMES)
    for ax, batch in zip(axes[:, 0], batches, strict=True):
        for i, runtime in enumerate(RUNTIMES):
            xs, ys, hatches = [], [], []
            for j, spec in enumerate(specs):
                cell = data["results"].get(spec, {}).get(str(batch), {}).get(runtime)
                if cell and "median" in cell:
                    xs.append(j - 0.45 + (i + 0.5) * width)
                    ys.append(cell["median"] * 1e3)
                    hatches.append("" if cell["ok"] else "xx")
            bars = ax.bar(xs, ys, width, label=runtime, color=colours[i % 10])
            for bar, hatch in zip(bars, hatches, strict=True):
                bar.set_hatch(hatch)
            ax.bar_label(bars, fmt="%.3g", rotation=90, padding=2, fontsize=6.5)
        ax.set_yscale("log")
        ax.margins(y=0.25)
        ax.set_xticks(np.arange(len(specs)), specs)
        ax.set_ylabel("median ms per call (log scale)")
        ax.set_title(f"batch {batch}")
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(
        "Deploy latency of the generated MobileNets on the CPU "
        "(lower is better; hatched: logits disagree)"
    )
    fig.tight_layout(rect=(0, 0.07 if len(batches) == 1 else 0.04, 1, 1))
    metadata = {".png": {"Software": None}, ".svg": {"Date": None}}
    fig.savefig(path, dpi=110, metadata=metadata.get(path.suffix.lower()))
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--specs", nargs="+", choices=CANONICAL, default=CANONICAL)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--repeats", type=int, help="timed calls each (default 50 at batch 1, else 20)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed turns")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=100.0,
        help="untimed calls of a runtime before each timed one, in ms (see above)",
    )
    parser.add_argument(
        "--init", choices=("calibrated", "default"), default="calibrated"
    )
    parser.add_argument("--plot", type=Path, default=Path("deploy_latency.png"))
    parser.add_argument("--json", type=Path, help="save the raw figures here")
    parser.add_argument("--child", choices=tuple(FAMILIES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.specs = list(args.specs)

    if args.child:
        child = torch_child if args.child == "torch" else tf_child
        args.out.write_text(json.dumps(child(args)))
        return 0

    start = time.perf_counter()
    print(NOISE_NOTE)
    print(
        f"{args.threads} threads, {RESOLUTION}x{RESOLUTION}, float32, "
        f"{args.init} random weights; load average {load_avg()}"
    )
    with tempfile.TemporaryDirectory() as name:
        children = {family: run_child(family, args, Path(name)) for family in FAMILIES}
    data = merge(children)
    data["args"] = {
        k: v
        for k, v in vars(args).items()
        if k in ("specs", "batch", "repeats", "init")
    }
    alarms = print_tables(data, args.specs, args.batch)
    print_prepare(data, args.specs)
    print_notes(data, args.specs)

    header("processes")
    for family, meta in data["meta"].items():
        other = meta.get("other_cpu_seconds")
        busy = "" if other is None else f", other processes used {other:.0f} CPU s"
        print(
            f"{family}: {meta['seconds']:.0f} s{busy}, load average "
            f"{meta['load_before']} -> {meta['load_after']}"
        )
    if data["meta"]["torch"].get("tensorflow_imported"):
        alarms.append("tensorflow was imported in the torch process: torch is slowed")
    plot(data, args.specs, args.batch, args.plot)
    print(f"chart: {args.plot}")
    data["meta"]["total_seconds"] = time.perf_counter() - start
    if args.json:
        args.json.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"raw figures: {args.json}")
    print(f"total {data['meta']['total_seconds']:.0f} s")
    if alarms:
        header("ATTENTION")
        for line in alarms:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
