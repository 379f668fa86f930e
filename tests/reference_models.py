"""The reference libraries in the tests: timm and torchvision, importable with the
CPU torch, and measurements of their models.

torchvision's package `__init__` fails with the CPU build of torch the tests run on
(`operator torchvision::nms does not exist`), and timm imports torchvision's
submodules (`torchvision.ops.misc` in timm.layers). `bare_torchvision()` first tries
the normal import; if torchvision's `__init__` fails, it registers a bare
`torchvision` package whose `__path__` is the installed folder, so that its
submodules (`torchvision.models`, `torchvision.ops.misc`, ...) load from disk
without running `__init__`. This is for tests and benchmarks only: mbcompile itself
never imports torch, torchvision or timm.

Models are always built with random weights (`pretrained=False`, `weights=None`):
nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def bare_torchvision() -> None:
    """Make torchvision's submodules importable whether or not its __init__ works."""
    if "torchvision" in sys.modules:
        return
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


def import_timm():
    """The timm module (with torchvision's submodules importable)."""
    bare_torchvision()
    import timm

    return timm


def torchvision_model(name: str):
    """torchvision's model `name` (e.g. mobilenet_v3_small), randomly initialised by
    torchvision, in eval mode."""
    bare_torchvision()
    from torchvision import models

    return getattr(models, name)(weights=None).eval()


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
    forward hooks on timm's own modules (out elements x in/groups x kh x kw), and of
    both matrix products of every multi-query attention (heads x queries x keys x
    (key width + value width)), keys counted as its key branch outputs them. On the
    model's device: on the meta device only shapes are computed (a 300M model at
    768 counts in seconds).

    Two of timm's layers convolve with `F.conv2d` where no Conv2d module runs, so
    they have hooks of their own, counting what mbcompile's costs count (see
    mbcompile/analysis/cost.py): a CondConv2d is the convolution with the sample's
    kernel plus mixing that kernel from the experts' (its `routing @ weight`:
    experts x kernel size); a BlurPool2d is a fixed depthwise convolution, its
    filter's taps per output element. A GlobalContext's attention pooling is a
    matrix product in its forward (the map (C, H x W) @ its softmaxed attention
    (H x W, 1)): C x H x W per image, read off its input."""
    import torch

    total = 0
    key_positions: dict[int, int] = {}

    def conv(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        total += output[0].numel() * per_output

    def cond_conv(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        total += output[0].numel() * per_output + module.weight.numel()

    def blur_pool(module, inputs, output):
        nonlocal total
        total += output[0].numel() * module.filt_size**2

    def global_context(module, inputs, output):
        nonlocal total
        total += inputs[0][0].numel()  # channels x positions, one image

    def linear(module, inputs, output):
        nonlocal total
        total += module.in_features * module.out_features

    def keys(module, inputs, output):  # the key branch runs before the attention
        key_positions[id(module)] = output.shape[2] * output.shape[3]

    def attention(module, inputs, output):
        nonlocal total
        x = inputs[0]
        stride_h, stride_w = module.query_strides
        queries = (x.shape[2] // stride_h) * (x.shape[3] // stride_w)
        widths = module.key_dim + module.value_dim
        total += module.num_heads * queries * key_positions[id(module.key)] * widths

    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear))
        elif type(module).__name__ == "CondConv2d":
            hooks.append(module.register_forward_hook(cond_conv))
        elif type(module).__name__ == "BlurPool2d":
            hooks.append(module.register_forward_hook(blur_pool))
        elif type(module).__name__ == "GlobalContext":
            hooks.append(module.register_forward_hook(global_context))
        elif type(module).__name__ == "MultiQueryAttention2d":
            hooks.append(module.key.register_forward_hook(keys))
            hooks.append(module.register_forward_hook(attention))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, resolution, resolution, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return total
