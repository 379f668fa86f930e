"""timm in the tests: importing it with the CPU torch, and measuring its models.

torchvision's package `__init__` fails with the CPU build of torch the tests run on
(`operator torchvision::nms does not exist`), and timm imports torchvision's
submodules (`torchvision.ops.misc` in timm.layers). `import_timm()` first tries the
normal import; if torchvision's `__init__` fails, it registers a bare `torchvision`
package whose `__path__` is the installed folder, so that its submodules load from
disk without running `__init__`, and imports timm then. This is for tests and
benchmarks only: mbcompile itself never imports torch, torchvision or timm.

Models are always built with `pretrained=False`: nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def import_timm():
    """The timm module, importable whether or not torchvision's __init__ works."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    try:
        import torchvision  # noqa: F401
    except Exception:  # its __init__ registers compiled ops this torch lacks
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        found = importlib.util.find_spec("torchvision")  # located, not executed
        package = types.ModuleType("torchvision")
        package.__path__ = list(found.submodule_search_locations) if found else []
        package.__spec__ = found
        sys.modules["torchvision"] = package
    import timm

    return timm


def create(name: str, **kwargs):
    """timm's model `name`, randomly initialised by timm, in eval mode."""
    return import_timm().create_model(name, pretrained=False, **kwargs).eval()


def parameter_counts(model) -> tuple[int, int]:
    """(trainable parameters, batch-norm running statistics)."""
    import torch

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    statistics = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    )
    return trainable, statistics


def count_macs(model, resolution: int) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one image, counted by
    forward hooks on timm's own modules (out elements x in/groups x kh x kw)."""
    import torch

    total = 0

    def conv(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        total += output[0].numel() * per_output

    def linear(module, inputs, output):
        nonlocal total
        total += module.in_features * module.out_features

    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for hook in hooks:
            hook.remove()
    return total
