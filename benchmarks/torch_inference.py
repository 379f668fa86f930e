"""Eager CPU inference latency of the generated PyTorch MobileNetV2.

Candidates, timed round-robin with the same input, weights and thread count:

- generated: `compiler.generate(..., "torch")` for specs/v2.yaml, random weights
  and batch-norm statistics;
- generated --fold-bn: the CLI's inference-form source (convolutions with bias, no
  batch norm) with the same weights folded by `mbcompile weights --fold-bn`'s
  conversion (mbcompile.weights.fold_batch_norm);
- generated, BN folded at runtime: the unfolded module after `torch.fx` conv+BN
  fusion (torch.fx.experimental.optimization.fuse), for comparison;
- torchvision mobilenet_v2 with the generated module's state_dict (the keys match
  torchvision's), whenever torchvision can be imported; otherwise it says why not.

Every candidate's logits are first checked against the generated module's.

Targets: generated ≤ 1.05× torchvision; BN-folded ≤ 0.90× torchvision (without
torchvision, folded is reported against the unfolded generated module).

    python benchmarks/torch_inference.py [--threads 1] [--batch 1 8] [--repeats 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import NOISE_NOTE, SPECS, header, import_source, interleaved

REFERENCE = "torchvision mobilenet_v2"
GENERATED = "generated"
FOLDED_FX = "generated, BN folded at runtime (torch.fx)"
FOLDED_CLI = "generated --fold-bn"
TARGETS = {GENERATED: 1.05, FOLDED_FX: 0.90, FOLDED_CLI: 0.90}


def randomize(model, seed: int = 0) -> None:
    """Random batch-norm parameters and statistics (convolutions keep their own
    random initialisation), so that BN folding changes the weights for real."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    model.eval()


def generated_source(spec: Path, *flags: str) -> str:
    command = [sys.executable, "-m", "mbcompile", str(spec), "--backend", "torch"]
    done = subprocess.run(
        [*command, *flags, "-o", "-"], check=True, capture_output=True, text=True
    )
    return done.stdout


def fold_weights(spec: Path, trained, folded) -> None:
    """Load `trained`'s weights into the folded module, as `mbcompile weights
    --fold-bn` converts them."""
    import numpy as np
    import torch
    from torch import nn

    from mbcompile import compiler
    from mbcompile.backends.weights import fold_batch_norm, param_ops

    def parametric(model):
        kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
        return [m for m in model.modules() if isinstance(m, kinds)]

    def tensors(module):
        if isinstance(module, nn.BatchNorm2d):
            return [module.weight, module.bias, module.running_mean, module.running_var]
        return [module.weight] + ([module.bias] if module.bias is not None else [])

    _, graph = compiler.load_and_expand(spec)
    _, folded_graph = compiler.load_and_expand(spec, ["fold_batch_norm=true"])
    arrays = [[t.detach().numpy() for t in tensors(m)] for m in parametric(trained)]
    converted = fold_batch_norm(param_ops(graph), param_ops(folded_graph), arrays)
    with torch.no_grad():
        for module, values in zip(parametric(folded), converted, strict=True):
            for target, value in zip(tensors(module), values, strict=True):
                target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def torchvision_model(state_dict):
    """(model, None) or (None, why it is skipped)."""
    try:
        import torchvision
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        return None, f"torchvision cannot be imported ({type(exc).__name__}: {exc})"
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), None


def candidates(spec: Path, workdir: Path):
    """{label: model}, {label: reason skipped}."""
    import torch
    from torch.fx.experimental.optimization import fuse

    generated = import_source(generated_source(spec), workdir).build_model()
    randomize(generated)
    models = {GENERATED: generated, FOLDED_FX: fuse(generated)}
    skipped = {}
    folded = import_source(generated_source(spec, "--fold-bn"), workdir).build_model()
    fold_weights(spec, generated, folded)
    models[FOLDED_CLI] = folded.eval()
    reference, why = torchvision_model(generated.state_dict())
    if reference is not None:
        models[REFERENCE] = reference
    else:
        skipped[REFERENCE] = why
    with torch.inference_mode():
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        expected = generated(x)
        for label, model in models.items():
            diff = float((model(x) - expected).abs().max())
            print(f"max |logits - generated| {diff:.2e}  {label}")
            assert diff <= 1e-3, f"{label} computes something else"
    return models, skipped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls each")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--spec", type=Path, default=SPECS / "v2.yaml")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    print(NOISE_NOTE)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), eager, fp32"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models, skipped = candidates(args.spec, Path(tmp))
    for label, why in skipped.items():
        print(f"skipped: {label}: {why}")
    baseline = REFERENCE if REFERENCE in models else GENERATED

    ratios: dict[tuple[str, int], float] = {}
    for batch in args.batch:
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(2))

        def call(model, x=x):
            with torch.inference_mode():
                return model(x)

        timings = interleaved(
            {label: (lambda m=m: call(m)) for label, m in models.items()},
            repeats=args.repeats,
            warmup=args.warmup,
        )
        header(f"batch {batch}: per call, ratio = median / median of {baseline}")
        for label, stats in timings.items():
            ratio = stats.median / timings[baseline].median
            ratios[label, batch] = ratio
            print(f"{label:45s} {stats.ms()}  x{ratio:.3f}")

    header(f"targets (against {baseline})")
    for label, target in TARGETS.items():
        if label == baseline or label not in models:
            continue
        for batch in args.batch:
            ratio = ratios[label, batch]
            mark = "meets" if ratio <= target else "MISSES"
            print(f"{label}, batch {batch}: x{ratio:.3f} {mark} target ≤ {target}x")
    if baseline != REFERENCE:
        print(f"no torchvision: {GENERATED} vs reference not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
