"""A small image task that a generated model must learn, and the recipe that trains
it in each framework (tests/test_learning.py; benchmarks/learning_curves.py prints the
curves).

Ten classes: five shapes (disk, ring, square, triangle, cross) in two colour families
(warm: red dominant, cool: blue dominant), drawn at random position, size (radius a
quarter to a third of the image) and rotation on a random grey background with
Gaussian noise, 64x64. Generated with NumPy alone from fixed seeds: no downloads, the
same images on every machine. The training and held-out sets come from different
seeds, so no held-out image is a training image. Colour alone gives two classes'
worth of information and shape alone five: reaching 90% needs both.

The model is the generated MobileNetV3-Small at width 0.5 and 64x64 with 10 classes
(`build_model(num_classes=10)`), trained from the spec's own initialisation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from helpers import import_source, run_python
from mbcompile import compiler

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "v3_small.yaml"
OVERRIDES = ("width_multiplier=0.5", "resolution=64", "conventions.bn_momentum=0.1")
RESOLUTION = 64
CLASSES = 10
SHAPES = ("disk", "ring", "square", "triangle", "cross")

TRAIN_SEED, HELD_OUT_SEED = 0, 1
TRAIN_IMAGES, HELD_OUT_IMAGES = 4000, 1000
# TensorFlow's op threads while Keras trains (train_keras_in_child). Their number
# sets the order of its sums and so their rounding, which hundreds of steps amplify
# (on this task's first, harder version, one thread ended at 96.6% held out and two
# at 98.4%). Fixed, the outcome depends neither on the machine's cores nor on
# pytest's workers.
KERAS_THREADS = 2

# The recipe, the same in both frameworks: AdamW, the learning rate warmed up
# linearly for a tenth of the steps then cosine-decayed to zero, cross-entropy on the
# logits with label smoothing, batches drawn by a seeded permutation of the training
# set. Label smoothing (timm's default, 0.1) keeps the logits within a few units:
# without it they grow to ~30 and int8's output step (range/256) to ~0.2, enough to
# tie the two largest logits of 1% of the held-out images. 300 steps of 64 images
# (4.8 epochs): PyTorch reaches 99.4%, 99.6% and 99.9% held out from initialisation
# seeds 0, 1 and 2, and their int8 TFLite files agree with them on 100%, 100% and
# 99.8% of the calibration images (an AVX-512 Xeon, one thread). Most of it comes
# late, as the rate falls, and how a run rounds depends on the CPU's kernels: 250
# steps reached 99.4% from seed 0 on one machine and 95.9% on another, whose int8
# file agreed on 99.2%, next to the export's 99% floor.
STEPS = 300
BATCH = 64
LEARNING_RATE = 1e-2
WEIGHT_DECAY = 1e-4
WARMUP = STEPS // 10
LABEL_SMOOTHING = 0.1


def images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` NCHW float32 images in [-1, 1] and their int64 labels (balanced)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % CLASSES
    rng.shuffle(labels)
    shape, warm = labels // 2, labels % 2 == 0
    n = count
    centre = rng.uniform(0.3, 0.7, (2, n, 1, 1)) * RESOLUTION
    radius = rng.uniform(0.25, 0.35, (n, 1, 1)) * RESOLUTION
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    grid = np.arange(RESOLUTION) + 0.5
    dy = (grid[None, :, None] - centre[0]) / radius
    dx = (grid[None, None, :] - centre[1]) / radius
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    r2 = u * u + v * v
    masks = {
        "disk": r2 <= 1.0,
        "ring": (r2 <= 1.0) & (r2 >= 0.5**2),
        "square": np.maximum(np.abs(u), np.abs(v)) <= 0.75,
        "triangle": (v >= -0.5) & (v <= 1.0 - np.sqrt(3.0) * np.abs(u)),
        "cross": ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3))
        & (np.maximum(np.abs(u), np.abs(v)) <= 1.0),
    }
    mask = np.zeros((n, RESOLUTION, RESOLUTION), bool)
    for index, name in enumerate(SHAPES):
        chosen = shape == index
        mask[chosen] = masks[name][chosen]
    # Foreground: the family's dominant channel high, the opposite one low, green
    # anywhere; background: a dark grey level.
    dominant = rng.uniform(0.7, 1.0, n)
    opposite = rng.uniform(0.0, 0.3, n)
    green = rng.uniform(0.0, 1.0, n)
    red = np.where(warm, dominant, opposite)
    blue = np.where(warm, opposite, dominant)
    foreground = np.stack([red, green, blue], axis=1)[:, :, None, None]
    background = rng.uniform(0.0, 0.4, (n, 1, 1, 1))
    picture = np.where(mask[:, None], foreground, background)
    picture = picture + rng.normal(0.0, 0.05, picture.shape)
    picture = np.clip(picture, 0.0, 1.0) * 2.0 - 1.0
    return picture.astype(np.float32), labels.astype(np.int64)


@dataclass(frozen=True)
class Task:
    train_x: np.ndarray  # NCHW
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @classmethod
    def make(cls) -> Task:
        return cls(
            *images(TRAIN_IMAGES, TRAIN_SEED), *images(HELD_OUT_IMAGES, HELD_OUT_SEED)
        )


def batches(seed: int = 0):
    """Index arrays of the STEPS training batches: epochs of a seeded permutation."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < STEPS * BATCH:
        order.extend(rng.permutation(TRAIN_IMAGES))
    return np.asarray(order[: STEPS * BATCH]).reshape(STEPS, BATCH)


def learning_rate(step: int) -> float:
    if step < WARMUP:
        return LEARNING_RATE * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return LEARNING_RATE * 0.5 * (1.0 + np.cos(np.pi * progress))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).argmax(axis=1) == labels))


@dataclass
class Curve:
    """Training loss per step and held-out accuracy at a few steps."""

    loss: list[float] = field(default_factory=list)
    held_out: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def build_module(backend: str, tmp_path: Path):
    """The generated module (its build_model takes num_classes) for the task."""
    _, graph = compiler.load_and_expand(SPEC, OVERRIDES)
    return import_source(compiler.generate(graph, backend), tmp_path, f"task_{backend}")


# ----------------------------------------------------------------------- PyTorch


def predict_torch(model, x: np.ndarray, batch: int = 250) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate(
            [
                model(torch.from_numpy(x[i : i + batch])).numpy()
                for i in range(0, len(x), batch)
            ]
        )


def train_torch(model, task: Task, evaluate_every: int = 0) -> Curve:
    import torch

    torch.manual_seed(0)  # dropout masks
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY
    )
    x, y = torch.from_numpy(task.train_x), torch.from_numpy(task.train_y)
    curve = Curve()
    start = time.perf_counter()
    for step, index in enumerate(batches()):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        index = torch.from_numpy(index)
        loss = torch.nn.functional.cross_entropy(
            model(x[index]), y[index], label_smoothing=LABEL_SMOOTHING
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.loss.append(loss.item())
        if evaluate_every and (step + 1) % evaluate_every == 0:
            curve.held_out[step + 1] = accuracy(
                predict_torch(model, task.test_x), task.test_y
            )
    curve.seconds = time.perf_counter() - start
    model.eval()
    return curve


# ----------------------------------------------------------------------- Keras


def predict_keras(model, x: np.ndarray, batch: int = 250) -> np.ndarray:
    return np.asarray(
        model.predict(x.transpose(0, 2, 3, 1), batch_size=batch, verbose=0)
    )


def train_keras(model, task: Task, evaluate_every: int = 0) -> Curve:
    import keras

    keras.utils.set_random_seed(0)  # dropout masks
    model.compile(
        optimizer=keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY),
        # Keras smooths only one-hot labels (CategoricalCrossentropy).
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=LABEL_SMOOTHING
        ),
    )
    x = task.train_x.transpose(0, 2, 3, 1)
    one_hot = np.eye(CLASSES, dtype=np.float32)[task.train_y]
    curve = Curve()
    start = time.perf_counter()
    for step, index in enumerate(batches()):
        model.optimizer.learning_rate = learning_rate(step)
        curve.loss.append(float(model.train_on_batch(x[index], one_hot[index])))
        if evaluate_every and (step + 1) % evaluate_every == 0:
            curve.held_out[step + 1] = accuracy(
                predict_keras(model, task.test_x), task.test_y
            )
    curve.seconds = time.perf_counter() - start
    return curve


def train_keras_in_child(folder: Path) -> tuple[Path, Curve]:
    """train_keras from the spec's initialisation (seed 0) in a fresh process with
    KERAS_THREADS op threads: the trained weights (`.weights.h5`) and the curve."""
    done = run_python(
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pathlib import Path\n"
        "import synthetic_task\n"
        f"synthetic_task.train_keras_here(Path({str(folder)!r}))\n",
        env={"TF_NUM_INTRAOP_THREADS": str(KERAS_THREADS)},
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    curve = Curve(**json.loads((folder / "curve.json").read_text()))
    return folder / "trained.weights.h5", curve


def train_keras_here(folder: Path) -> None:
    """train_keras_in_child's process: trains and writes both files to `folder`."""
    import keras

    module = build_module("keras", folder)
    keras.utils.set_random_seed(0)
    model = module.build_model(num_classes=CLASSES)
    curve = train_keras(model, Task.make())
    model.save_weights(folder / "trained.weights.h5")
    (folder / "curve.json").write_text(json.dumps(asdict(curve)))
