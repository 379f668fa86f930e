"""One comparison of a spec in specs/timm/ with timm's model of the same name, used
by tests/test_timm.py and by the on-demand family run (benchmarks/timm_family.py).

`compare(name, workdir)` checks, in this order, and records every disagreement:

1. **Counts** at the spec's own resolution, which must be timm's default input
   size: trainable parameters, batch-norm statistics and MACs (a forward-hook count
   over timm's own modules, tests/reference_models.py). timm's model is built on
   PyTorch's meta device for this, so counting costs no weights and no arithmetic.
2. **State dict**: the generated PyTorch model's keys are timm's, in timm's order,
   with timm's shapes, and timm's state_dict loads into it with `strict=True`.
3. **Logits in PyTorch** at `resolution` (small by default; the networks are fully
   convolutional, and the spec is compiled at that resolution, so the `tf_` models'
   SAME padding is computed for it): timm's model with random weights and
   batch-norm statistics measured on random images, its state_dict loaded into the
   generated model, the same images through both.
4. **Logits in Keras**: the same weights converted by `mbcompile weights`, loaded
   into the generated Keras model.

Models over `META_ABOVE` trainable parameters are compared structurally only (1 and
2 on the meta device, `load_state_dict(..., assign=True)`): their logits would need
gigabytes and minutes each. Every logit difference is `helpers.difference`, held to
the one `TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers import (
    SPECS,
    TOLERANCE,
    difference,
    import_source,
    randomize_torch,
    run_cli,
    run_keras,
    run_torch,
)
from mbcompile import compiler
from reference_models import count_macs, create, parameter_counts

TIMM_SPECS = SPECS / "timm"
# Above this many trainable parameters a model is compared on the meta device only.
META_ABOVE = 60_000_000
# Where logits are compared unless a caller says otherwise: small enough to be quick,
# large enough that every network keeps a spatial map to its last stage; its odd
# intermediate sizes (15 at stride 8) give SAME padding both of its cases.
LOGIT_RESOLUTION = 120
CALIBRATION_BATCH = 4  # images whose batch statistics become the BN statistics


def spec_path(name: str) -> Path:
    return TIMM_SPECS / f"{name}.yaml"


def names() -> list[str]:
    """Every spec in specs/timm/, by name."""
    return sorted(path.stem for path in TIMM_SPECS.glob("*.yaml"))


@dataclass
class Comparison:
    """What one comparison measured: ours, and what disagreed with timm."""

    name: str
    resolution: int  # the spec's own (timm's default input size)
    params: int | None = None
    bn_statistics: int | None = None
    macs: int | None = None
    logit_resolution: int | None = None  # None: compared on the meta device
    torch_diff: float | None = None
    keras_diff: float | None = None
    problems: list[str] = field(default_factory=list)
    # float64_differences' figures, for a float32 difference looked into
    float64: dict[str, float] | None = None

    @property
    def exact(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.problems:
            return "differs: " + "; ".join(self.problems)
        if self.logit_resolution is None:
            return "structure-exact (meta)"
        return "exact"


def compare(
    name: str,
    workdir: Path,
    *,
    resolution: int | None = LOGIT_RESOLUTION,
    keras: bool = True,
    overrides: tuple[str, ...] = (),
    seed: int = 7,
) -> Comparison:
    """Compare specs/timm/NAME.yaml (with `overrides` as `--set` applies them: a
    deliberately broken variant) with timm's NAME. `resolution=None` (or a model
    over META_ABOVE parameters) compares the structure only, on the meta device."""
    import torch

    path = spec_path(name)
    _, graph = compiler.load_and_expand(path, list(overrides))
    own = graph.network.resolution
    result = Comparison(name, own)
    report = compiler.cost_report(graph)
    result.params = report.trainable_params
    result.bn_statistics = report.non_trainable_params
    result.macs = report.macs

    with torch.device("meta"):
        skeleton = create(name)
        theirs_macs = count_macs(skeleton, own)
    expected_size = skeleton.pretrained_cfg["input_size"][-1]
    if own != expected_size:
        result.problems.append(f"resolution {own}, timm's default {expected_size}")
    if graph.network.num_classes != skeleton.num_classes:
        result.problems.append(
            f"{graph.network.num_classes} classes, timm {skeleton.num_classes}"
        )
    theirs = (*parameter_counts(skeleton), theirs_macs)
    ours = (result.params, result.bn_statistics, result.macs)
    for label, a, b in zip(
        ("params", "BN statistics", "MACs"), ours, theirs, strict=True
    ):
        if a != b:
            result.problems.append(f"{label} {a:,} != timm {b:,}")

    if resolution is None or theirs[0] > META_ABOVE:
        _check_state_dict(result, graph, skeleton.state_dict(), workdir, meta=True)
        return result

    result.logit_resolution = resolution
    at = [*overrides, f"resolution={resolution}"]
    _, graph = compiler.load_and_expand(path, at)
    reference, images = _randomized(name, resolution, seed)
    state = reference.state_dict()
    ours_torch = _check_state_dict(result, graph, state, workdir, meta=False)
    if ours_torch is None:
        return result
    want = run_torch(reference, images)
    result.torch_diff = difference(want, run_torch(ours_torch, images))
    if result.torch_diff > TOLERANCE:
        result.problems.append(f"torch logits differ by {result.torch_diff:.3g}")
    if keras:
        result.keras_diff = _keras_difference(path, at, state, images, want, workdir)
        if result.keras_diff > TOLERANCE:
            result.problems.append(f"keras logits differ by {result.keras_diff:.3g}")
    return result


def _randomized(name: str, resolution: int, seed: int):
    """timm's NAME with random weights and batch-norm statistics measured on
    random images, and two other random images to compare logits on."""
    reference = create(name)
    rng = np.random.default_rng(seed)
    calibration = rng.standard_normal((CALIBRATION_BATCH, 3, resolution, resolution))
    randomize_torch(reference, calibration.astype(np.float32), seed=seed)
    images = rng.standard_normal((2, 3, resolution, resolution)).astype(np.float32)
    return reference, images


def float64_differences(
    name: str, workdir: Path, resolution: int = LOGIT_RESOLUTION, seed: int = 7
) -> dict[str, float]:
    """Where `compare` finds a float32 difference, whether it is rounding: timm's
    model and both generated ones (the same weights as `compare` gives them) in
    float64 and in float32, each compared with timm's float64 logits."""
    import keras
    import torch

    path = spec_path(name)
    _, graph = compiler.load_and_expand(path, [f"resolution={resolution}"])
    reference, images = _randomized(name, resolution, seed)
    state = reference.state_dict()
    ours = _check_state_dict(Comparison(name, resolution), graph, state, workdir, False)
    source = compiler.generate(graph, "keras")
    keras32 = import_source(source, workdir, "keras32").build_model()
    at = (f"resolution={resolution}",)
    keras32.load_weights(_converted(path, at, state, workdir))
    x64 = images.astype(np.float64)
    with torch.no_grad():
        exact = reference.double()(torch.from_numpy(x64)).numpy()
        ours64 = ours.double().eval()(torch.from_numpy(x64)).numpy()
    reference.float()
    figures = {
        "timm float32": difference(exact, run_torch(reference, images)),
        "keras float32": difference(exact, run_keras(keras32, images)),
        "torch float64": difference(exact, ours64),
    }
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        keras64 = import_source(source, workdir, "keras64").build_model()
        keras64.set_weights([w.astype(np.float64) for w in keras32.get_weights()])
        nhwc = x64.transpose(0, 2, 3, 1)
        figures["keras float64"] = difference(exact, keras64(nhwc, training=False))
    finally:
        keras.config.set_dtype_policy(policy)
        keras.backend.clear_session()
    return figures


def _check_state_dict(result: Comparison, graph, state: dict, workdir, meta: bool):
    """The generated PyTorch model (on the meta device when `meta`) with timm's
    state_dict loaded strictly, or None (and the reason in `result`) if it differs."""
    import torch

    module = import_source(compiler.generate(graph, "torch"), workdir, result.name)
    if meta:
        with torch.device("meta"):
            model = module.build_model()
    else:
        model = module.build_model()
    ours = model.state_dict()
    if list(ours) != list(state):
        missing = [k for k in state if k not in ours]
        extra = [k for k in ours if k not in state]
        order = "same keys, another order" if not (missing or extra) else ""
        result.problems.append(
            "state_dict keys differ: "
            + (order or f"timm's {missing[:2]} missing, {extra[:2]} not timm's")
        )
        return None
    shapes = [k for k in state if tuple(ours[k].shape) != tuple(state[k].shape)]
    if shapes:
        key = shapes[0]
        result.problems.append(
            f"{len(shapes)} shapes differ, first {key}: "
            f"{tuple(ours[key].shape)} != timm {tuple(state[key].shape)}"
        )
        return None
    model.load_state_dict(state, strict=True, assign=meta)
    return model


def _keras_difference(path, overrides, state, images, want, workdir) -> float:
    """Logits of the generated Keras model given timm's weights by `mbcompile
    weights`, as a difference from `want`."""
    import keras

    _, graph = compiler.load_and_expand(path, list(overrides))
    module = import_source(compiler.generate(graph, "keras"), workdir, "keras")
    model = module.build_model()
    model.load_weights(_converted(path, overrides, state, workdir))
    diff = difference(want, run_keras(model, images))
    del model
    keras.backend.clear_session()
    return diff


def _converted(path, overrides, state, workdir) -> Path:
    """timm's `state` as a Keras weights file, converted by `mbcompile weights`."""
    import torch

    weights, converted = workdir / "timm.pt", workdir / "timm.weights.h5"
    torch.save(state, weights)
    argv = ["weights", path, *(f"--set={o}" for o in overrides)]
    code, _, err = run_cli([*argv, "--from", weights, "--to", converted])
    assert code == 0, err
    return converted
