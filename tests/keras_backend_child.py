"""Runs generated Keras models under the backend this process was started with.

Used by tests/test_keras_backends.py, one process per backend (Keras fixes its
backend when it is imported): `KERAS_BACKEND=jax python keras_backend_child.py DIR`.
DIR holds `cases.json` (spec path and overrides per case) and, per case i,
`weights_i.npz` (the arrays of `model.get_weights()`) and `images_i.npy` (NHWC).
Writes `outputs_<backend>.npz` with each case's outputs under `i/<output name>`.
The test's own process computes its backend's outputs with `outputs` below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

from helpers import import_source
from mbcompile import compiler


def skip_random_initialisation_under_jax() -> None:
    """Every weight is overwritten by `set_weights`, so initial values never matter
    here. JAX compiles its random-number kernel once per weight shape (~0.2 s each,
    ~150 shapes per model), which would make building a model take 30-40 s; zeros
    need no compilation."""
    from keras.src.backend.jax import random

    def zeros(shape, *args, dtype=None, **kwargs):
        return np.zeros(shape, dtype or keras.config.floatx())

    random.normal = random.uniform = random.truncated_normal = zeros


def run(model, images: np.ndarray, backend: str):
    """The model's inference outputs. JAX runs it compiled (`predict_on_batch`: one
    XLA program; eagerly it compiles every op on its own, 3-4x slower here); the
    others eagerly (TensorFlow's tf.function tracing took longer than the run)."""
    if backend == "jax":
        return model.predict_on_batch(images)
    return model(images, training=False)


def outputs(model, images: np.ndarray, index: int) -> dict[str, np.ndarray]:
    """{"<case index>/<output name>": array}; a single output (a classifier's) is
    named "logits"."""
    result = run(model, images, keras.backend.backend())
    named = result if isinstance(result, dict) else {"logits": result}
    return {
        f"{index}/{name}": keras.ops.convert_to_numpy(value)
        for name, value in named.items()
    }


def main(workdir: Path) -> None:
    backend = keras.backend.backend()
    if backend == "jax":
        skip_random_initialisation_under_jax()
    sources = workdir / backend  # each process imports its own module files
    sources.mkdir()
    found = {}
    for index, case in enumerate(json.loads((workdir / "cases.json").read_text())):
        _, graph = compiler.load_and_expand(case["spec"], tuple(case["overrides"]))
        module = import_source(compiler.generate(graph, "keras"), sources)
        model = module.build_model()
        with np.load(workdir / f"weights_{index}.npz") as arrays:
            model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
        images = np.load(workdir / f"images_{index}.npy")
        found.update(outputs(model, images, index))
    np.savez(workdir / f"outputs_{backend}.npz", **found)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
