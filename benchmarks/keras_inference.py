"""CPU inference latency of the generated Keras MobileNetV2 against keras.applications.

The generated model is compiled from specs/v2.yaml with
`--set conventions=keras_applications`, under which its weighted layers (names,
classes, weight shapes, order) are keras.applications.MobileNetV2's; the reference
is built with weights=None and classifier_activation=None (logits), given random
batch-norm statistics, and its weights are copied into ours with set_weights, so
both compute the same function (checked before timing). If the layer lists ever
differ, both keep independent random weights and the script says so.

Two ways of calling each model, timed round-robin with the same input:
- eager: `model(x, training=False)`, one Python call per layer;
- graph: the same call inside `tf.function`, as `predict` runs it.

Target: generated ≤ 1.05× keras.applications.

    python benchmarks/keras_inference.py [--threads 1] [--batch 1 8] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import NOISE_NOTE, SPECS, header, import_source, interleaved, verdict

TARGET = 1.05


def weighted_layers(model) -> list[tuple]:
    return [
        (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
        for layer in model.layers
        if layer.weights
    ]


def randomize_bn(model, seed: int) -> None:
    """Random gamma, beta and moving statistics; kernels keep their initialisers."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                    (rng.standard_normal(n) * 0.1).astype(np.float32),
                    (rng.standard_normal(n) * 0.1).astype(np.float32),
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                ]
            )


def models(spec: Path, workdir: Path):
    """(generated, reference, note on how their weights relate)."""
    import keras

    from mbcompile import compiler

    _, graph = compiler.load_and_expand(spec, ["conventions=keras_applications"])
    resolution = graph.network.resolution
    ours = import_source(compiler.generate(graph, "keras"), workdir)
    generated = ours.build_model()
    reference = keras.applications.MobileNetV2(
        input_shape=(resolution, resolution, 3),
        weights=None,
        classifier_activation=None,
    )
    randomize_bn(reference, seed=0)
    if weighted_layers(generated) == weighted_layers(reference):
        generated.set_weights(reference.get_weights())
        x = np.random.default_rng(1).standard_normal((2, resolution, resolution, 3))
        x = x.astype(np.float32)
        ref = keras.ops.convert_to_numpy(reference(x, training=False))
        diff = float(
            np.abs(keras.ops.convert_to_numpy(generated(x, training=False)) - ref).max()
        )
        assert diff <= 1e-3, f"same weights, different logits ({diff:.2e})"
        note = f"identical weights via set_weights (max |logit diff| {diff:.2e})"
    else:
        randomize_bn(generated, seed=0)
        note = "layer lists differ: independent random weights (not comparable values)"
    return generated, reference, note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="TF intra-op threads")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls each")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--spec", type=Path, default=SPECS / "v2.yaml")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print(NOISE_NOTE)
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"{args.threads} intra-op thread(s), fp32"
    )
    with tempfile.TemporaryDirectory() as tmp:
        generated, reference, note = models(args.spec, Path(tmp))
    print(f"weights: {note}")

    contenders = {"generated": generated, "keras.applications": reference}
    graphs = {
        name: tf.function(lambda x, m=m: m(x, training=False), reduce_retracing=True)
        for name, m in contenders.items()
    }
    ratios = {}
    size = generated.input_shape[1]
    for batch in args.batch:
        rng = np.random.default_rng(batch)
        x = tf.constant(rng.standard_normal((batch, size, size, 3)), tf.float32)
        calls = {}
        for name, model in contenders.items():
            calls[f"{name}, eager"] = lambda m=model, x=x: m(x, training=False)
            calls[f"{name}, graph"] = lambda f=graphs[name], x=x: f(x)
        timings = interleaved(calls, repeats=args.repeats, warmup=args.warmup)
        header(f"batch {batch}: per call, ratio = generated / keras.applications")
        for mode in ("eager", "graph"):
            ours = timings[f"generated, {mode}"]
            theirs = timings[f"keras.applications, {mode}"]
            ratios[mode, batch] = ours.median / theirs.median
            print(f"{'generated, ' + mode:30s} {ours.ms()}")
            print(f"{'keras.applications, ' + mode:30s} {theirs.ms()}")
            print(f"{'':30s} ratio x{ratios[mode, batch]:.3f}")

    header("targets")
    for (mode, batch), ratio in ratios.items():
        print(f"{mode}, batch {batch}: ratio {verdict(ratio, TARGET, 'x')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
