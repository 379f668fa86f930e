"""Learning curves of the generated MobileNetV3-Small (width 0.5, 64x64, ten classes)
on the synthetic shapes-and-colours task of tests/synthetic_task.py, in PyTorch and in
Keras, with the recipe tests/test_learning.py uses.

Each framework trains in its own process (torch is never timed in a process that has
imported tensorflow). Prints the training loss (mean of each tenth of the run), the
held-out accuracy every `--every` steps and the training time, and saves a plot.

Target: both frameworks ≥ 90% held out, each under 3 minutes of CPU.

    python benchmarks/learning_curves.py [--every 50] [-o learning_curves.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import NOISE_NOTE, ROOT, header

sys.path.insert(0, str(ROOT / "tests"))

FRAMEWORKS = ("torch", "keras")
TARGET_ACCURACY = 0.90
TARGET_CPU_SECONDS = 180


def child(framework: str, every: int, out: Path) -> None:
    """Train in this process and write the curve as JSON."""
    import synthetic_task as task_module

    task = task_module.Task.make()
    with tempfile.TemporaryDirectory() as directory:
        module = task_module.build_module(framework, Path(directory))
        cpu = time.process_time()
        if framework == "torch":
            import torch

            torch.manual_seed(0)
            model = module.build_model(num_classes=task_module.CLASSES)
            curve = task_module.train_torch(model, task, evaluate_every=every)
            final = task_module.predict_torch(model, task.test_x)
        else:
            import keras

            keras.utils.set_random_seed(0)
            model = module.build_model(num_classes=task_module.CLASSES)
            curve = task_module.train_keras(model, task, evaluate_every=every)
            final = task_module.predict_keras(model, task.test_x)
        cpu = time.process_time() - cpu
    out.write_text(
        json.dumps(
            {
                "loss": curve.loss,
                "held_out": curve.held_out,
                "final": task_module.accuracy(final, task.test_y),
                "seconds": curve.seconds,
                "cpu_seconds": cpu,
            }
        )
    )


def plot(curves: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for framework, curve in curves.items():
        loss = curve["loss"]
        window = 20
        smooth = [
            sum(loss[max(0, i - window + 1) : i + 1])
            / len(loss[max(0, i - window + 1) : i + 1])
            for i in range(len(loss))
        ]
        loss_axes.plot(range(1, len(loss) + 1), smooth, label=framework)
        steps = [int(step) for step in curve["held_out"]]
        accuracy_axes.plot(
            steps, [100 * v for v in curve["held_out"].values()], "o-", label=framework
        )
    loss_axes.set(
        xlabel="step", ylabel="training loss (mean of 20 steps)", yscale="log"
    )
    accuracy_axes.axhline(100 * TARGET_ACCURACY, color="grey", linestyle=":")
    accuracy_axes.set(xlabel="step", ylabel="held-out accuracy (%)", ylim=(0, 100))
    for axes in (loss_axes, accuracy_axes):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.suptitle("Generated MobileNetV3-Small w0.5, synthetic 10-class task, 64x64")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", type=int, default=50, help="evaluate every N steps")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("learning_curves.png")
    )
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.every, args.json)
        return 0

    curves = {}
    with tempfile.TemporaryDirectory() as directory:
        for framework in FRAMEWORKS:
            out = Path(directory) / f"{framework}.json"
            command = [sys.executable, __file__, "--child", framework]
            command += ["--every", str(args.every), "--json", str(out)]
            env = dict(os.environ, KERAS_BACKEND="tensorflow")
            subprocess.run(command, check=True, env=env)
            curves[framework] = json.loads(out.read_text())

    header("training loss (mean over each tenth of the run)")
    steps = len(curves["torch"]["loss"])
    tenth = max(1, steps // 10)
    print(f"{'steps':>11} " + " ".join(f"{f:>8}" for f in FRAMEWORKS))
    for start in range(0, steps, tenth):
        means = [
            sum(curves[f]["loss"][start : start + tenth]) / tenth for f in FRAMEWORKS
        ]
        print(
            f"{start + 1:>5}-{start + tenth:<5} " + " ".join(f"{m:8.3f}" for m in means)
        )

    header("held-out accuracy (%)")
    print(f"{'step':>6} " + " ".join(f"{f:>8}" for f in FRAMEWORKS))
    for step in curves["torch"]["held_out"]:
        print(
            f"{step:>6} "
            + " ".join(f"{100 * curves[f]['held_out'][step]:8.1f}" for f in FRAMEWORKS)
        )

    header("result")
    for framework, curve in curves.items():
        accuracy_mark = "meets" if curve["final"] >= TARGET_ACCURACY else "MISSES"
        cpu_mark = "meets" if curve["cpu_seconds"] <= TARGET_CPU_SECONDS else "MISSES"
        print(
            f"{framework:>6}: held out {100 * curve['final']:.1f}% ({accuracy_mark} "
            f"≥ {100 * TARGET_ACCURACY:.0f}%), training {curve['seconds']:.0f} s wall, "
            f"{curve['cpu_seconds']:.0f} s CPU incl. evaluations ({cpu_mark} ≤ "
            f"{TARGET_CPU_SECONDS} s)"
        )
    plot(curves, args.output)
    print(f"\nplot: {args.output}")
    print(NOISE_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
