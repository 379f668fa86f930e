"""One SGD step from identical weights gives identical weights in both frameworks.

Same batch, batch norm in training mode, cross-entropy on logits, plain SGD (no
momentum, no weight decay). Dropout is set to 0 (its random masks cannot match).
Compared after the step: every trainable tensor, and the batch-norm running
statistics, which also checks that momentum is converted (Keras' momentum is
1 - PyTorch's).

Running variance: PyTorch stores the *unbiased* batch variance (times n / (n - 1),
n = batch x height x width) in `running_var`, Keras the biased one in
`moving_variance`; both normalise the batch itself with the biased variance. The
test therefore recovers the batch variance from Keras' update and checks PyTorch's
update against it with Bessel's correction, instead of comparing them directly (the
two differ by momentum * var / (n - 1), up to ~1e-2 on a 2 x 2 map).

Precision: the step runs in float64 in both frameworks. In float32, batch-norm in
training mode re-normalises every layer by statistics of a small batch, which lets
rounding grow from ~1e-6 at the stem to ~2e-4 at the last block (V1 at 128); a few activations
then sit on the other side of a ReLU6 kink (0 or 6) in one framework, and each such
flip changes whole gradient entries (measured: last-layer beta gradients 1% apart).
That is chaos of float32 arithmetic, not a difference between the frameworks; in
float64 the same comparison agrees to ~1e-8 (Keras keeps the learning rate as a
float32 variable: 0.1 + 1.5e-9), far inside the 1e-4 tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    SPECS,
    TOLERANCE,
    build,
    expects_pixels,
    keras_arrays,
    keras_layers_in_ir_order,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    torch_param_modules,
    torch_tensors,
)
from mbcompile.backends.weights import param_ops, torch_to_keras

LEARNING_RATE = 0.1
BATCH = 4
RESOLUTION = 64  # small maps (2 x 2 at the end) make Bessel's correction visible

CASES = [
    ("v1", None),
    pytest.param("v2", None, marks=pytest.mark.slow),  # its blocks: v3's without SE
    pytest.param("v3_large", None, marks=pytest.mark.slow),  # v3_small's, wider
    ("v3_small", None),
    ("v3_small", "keras_applications"),
]


def build_keras_float64(spec, tmp_path, overrides):
    """The generated Keras model with float64 variables and computation."""
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        _, _, model = build(spec, "keras", tmp_path, overrides)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    assert all(w.dtype == "float64" for w in model.weights)
    return model


def sgd_step_torch(model, images, labels):
    import torch

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.0)
    optimizer.zero_grad()
    logits = model(torch.from_numpy(images))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    loss.backward()
    optimizer.step()
    return float(loss)


def sgd_step_keras(model, images, labels):
    """Eagerly (tracing a compiled train step costs more than the step here)."""
    import keras
    import tensorflow as tf  # the tests' Keras backend (see conftest.py)

    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=0.0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = model(images.transpose(0, 2, 3, 1), training=True)
        loss = loss_fn(labels, logits)
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables, strict=True))
    return float(loss)


@pytest.mark.parametrize(
    "name,conventions",
    CASES,
    ids=[f"{n}-{c or 'default'}" for n, c in (getattr(x, "values", x) for x in CASES)],
)
def test_one_sgd_step_agrees(name, conventions, tmp_path, worst_differences):
    overrides = [f"resolution={RESOLUTION}", "head.dropout=0"]
    if conventions:
        overrides.append(f"conventions={conventions}")
    spec = SPECS / f"{name}.yaml"
    _, graph, torch_model = build(spec, "torch", tmp_path, overrides)
    torch_model.double()
    keras_model = build_keras_float64(spec, tmp_path, overrides)
    rescaled = expects_pixels(graph)
    calibration = random_images(graph, seed=3, pixels=rescaled).astype(np.float64)
    randomize_torch(torch_model, calibration, seed=3)
    port_torch_to_keras(graph, torch_model, keras_model)

    rng = np.random.default_rng(11)
    c, h, w = graph.shape("input")
    images = rng.standard_normal((BATCH, c, h, w))
    if rescaled:
        images = rng.uniform(0, 255, (BATCH, c, h, w))
    num_classes = graph.shape(graph.output)[0]
    labels = rng.integers(0, num_classes, BATCH).astype(np.int64)

    ops = param_ops(graph)
    modules = torch_param_modules(torch_model)
    layers = keras_layers_in_ir_order(graph, keras_model)
    # copies: torch_tensors() are views of the live parameters
    before = [
        [a.copy() for a in torch_to_keras(op, torch_tensors(m))]
        for op, m in zip(ops, modules, strict=True)
    ]

    torch_loss = sgd_step_torch(torch_model, images, labels)
    keras_loss = sgd_step_keras(keras_model, images, labels)
    assert abs(torch_loss - keras_loss) <= TOLERANCE * max(1.0, abs(torch_loss))

    worst_weight = worst_stat = largest_change = 0.0
    for op, module, layer, old in zip(ops, modules, layers, before, strict=True):
        ours = torch_to_keras(op, torch_tensors(module))
        theirs = keras_arrays(layer)
        if op.kind != "bn":
            for t, k, o in zip(ours, theirs, old, strict=True):
                worst_weight = max(worst_weight, float(np.abs(t - k).max()))
                largest_change = max(largest_change, float(np.abs(t - o).max()))
            continue
        # gamma, beta: trainable; running mean: same update rule in both
        for t, k, o in zip(ours[:3], theirs[:3], old[:3], strict=True):
            worst_weight = max(worst_weight, float(np.abs(t - k).max()))
            largest_change = max(largest_change, float(np.abs(t - o).max()))
        # running variance: PyTorch adds m * unbiased, Keras (1 - k) * biased
        momentum = op.attrs["momentum"]  # PyTorch convention, as in the IR
        n = BATCH * graph.shape(op.name)[1] * graph.shape(op.name)[2]
        keras_momentum = float(layer.momentum)
        assert abs(keras_momentum - (1 - momentum)) < 1e-9, "momentum not converted"
        batch_var = (theirs[3] - keras_momentum * old[3]) / (1 - keras_momentum)
        predicted = (1 - momentum) * old[3] + momentum * batch_var * n / (n - 1)
        worst_stat = max(worst_stat, float(np.abs(ours[3] - predicted).max()))

    label = f"{name} {conventions or 'default'}"
    worst_differences.append((f"sgd step weights {label}", worst_weight))
    print(
        f"figure: sgd step {label}: weights {worst_weight:.3g}, "
        f"running stats {worst_stat:.3g}, largest update {largest_change:.3g}"
    )
    assert largest_change > 10 * TOLERANCE, "the step changed nothing measurable"
    assert worst_weight <= TOLERANCE
    assert worst_stat <= TOLERANCE
