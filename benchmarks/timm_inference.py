"""Eager CPU inference latency of generated PyTorch models against timm's own.

For each model, timm's model (pretrained=False, random weights and batch-norm
statistics) and the module generated from specs/timm/<name>.yaml loaded with
timm's state_dict (strict) are timed round-robin on the same input, at the spec's
resolution, batch 1 and 8, with the given number of torch threads. Their logits are
checked to agree first.

Target: generated ≤ 1.02× timm.

    python benchmarks/timm_inference.py [--models mobilenetv4_conv_small ...]
        [--threads 2] [--batch 1 8] [--repeats 30]

timm is imported through tests/timm_models.py (torchvision's __init__ does not
import with the CPU build of torch); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import NOISE_NOTE, ROOT, SPECS, header, import_source, interleaved

sys.path.insert(0, str(ROOT / "tests"))
from timm_models import create  # tests/ holds the one timm import helper

TARGET = 1.02
DEFAULT_MODELS = ("mobilenetv4_conv_small", "efficientnet_b0", "mobilenetv3_large_100")


def models(name: str, workdir: Path):
    """(timm's model, the generated one with its weights, resolution), in eval mode."""
    import torch

    from mbcompile import compiler

    reference = create(name)
    generator = torch.Generator().manual_seed(0)
    state = reference.state_dict()
    for key, value in state.items():  # statistics that keep activations moderate
        if key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
    reference.load_state_dict(state)
    _, graph = compiler.load_and_expand(SPECS / "timm" / f"{name}.yaml")
    module = import_source(compiler.generate(graph, "torch"), workdir, name)
    generated = module.build_model().eval()
    generated.load_state_dict(reference.state_dict(), strict=True)
    return reference, generated, graph.network.resolution


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s). {NOISE_NOTE}")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            reference, generated, resolution = models(name, Path(scratch))
            for batch in args.batch:
                x = torch.randn(batch, 3, resolution, resolution)
                with torch.inference_mode():
                    want, got = reference(x), generated(x)
                    worst = float((want - got).abs().max())
                    timings = interleaved(
                        {
                            "timm": lambda m=reference, x=x: m(x),
                            "generated": lambda m=generated, x=x: m(x),
                        },
                        args.repeats,
                        args.warmup,
                    )
                header(f"{name} @ {resolution}, batch {batch}")
                print(f"  logits agree: max abs difference {worst:.3g}")
                for label, stats in timings.items():
                    print(f"  {label:<10} {stats.ms()}")
                ratio = timings["generated"].median / timings["timm"].median
                mark = "meets" if ratio <= TARGET else "MISSES"
                print(f"  generated / timm = {ratio:.3f} ({mark} target ≤ {TARGET})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
