"""Under torchvision conventions our PyTorch modules *are* torchvision's.

torchvision cannot be installed here, so its models are restated below from its
source (torchvision/models/mobilenetv2.py and mobilenetv3.py, 0.28): the channel
formulas and the module tree that produce the state_dict. The restatement is checked
against the measured manifest (tests/reference/torchvision_state_dicts.json) at
width 1.0 and then stands in for torchvision at other widths. Nothing here calls
mbcompile's channel code.
"""

from __future__ import annotations

import json

import pytest

from helpers import ROOT, SPECS, build

MANIFEST = json.loads(
    (ROOT / "tests" / "reference" / "torchvision_state_dicts.json").read_text()
)
TORCHVISION_NAMES = {
    "v2": "mobilenet_v2",
    "v3_large": "mobilenet_v3_large",
    "v3_small": "mobilenet_v3_small",
}


# ------------------------------------------------- torchvision, restated from source


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    # torchvision.models._utils._make_divisible
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Restated:
    """Leaf modules in registration order as (name, description), and the
    state_dict as (key, shape); descriptions carry what decides the outputs."""

    def __init__(self, eps: float, momentum: float) -> None:
        self.eps, self.momentum = eps, momentum
        self.modules: list[tuple[str, tuple]] = []
        self.state: list[tuple[str, tuple]] = []

    def conv(self, name, i, o, k, stride=1, groups=1, bias=False):
        # Conv2dNormActivation's padding: (kernel - 1) // 2 * dilation, dilation 1
        self.modules.append(
            (name, ("Conv2d", i, o, k, stride, (k - 1) // 2, groups, bias))
        )
        self.state.append((f"{name}.weight", (o, i // groups, k, k)))
        if bias:
            self.state.append((f"{name}.bias", (o,)))

    def bn(self, name, c):
        self.modules.append((name, ("BatchNorm2d", c, self.eps, self.momentum)))
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            self.state.append((f"{name}.{buffer}", (c,)))
        self.state.append((f"{name}.num_batches_tracked", ()))

    def act(self, name, kind):
        self.modules.append((name, (kind,)))

    def conv_norm_act(self, name, i, o, k, stride=1, groups=1, act=None):
        """torchvision.ops.Conv2dNormActivation: [conv, norm, activation]."""
        self.conv(f"{name}.0", i, o, k, stride, groups)
        self.bn(f"{name}.1", o)
        if act:
            self.act(f"{name}.2", act)

    def linear(self, name, i, o):
        self.modules.append((name, ("Linear", i, o)))
        self.state += [(f"{name}.weight", (o, i)), (f"{name}.bias", (o,))]


V2_SETTING = [  # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def torchvision_v2(width: float, num_classes: int = 1000, round_nearest: int = 8):
    m = Restated(eps=1e-5, momentum=0.1)
    residual = []
    input_channel = _make_divisible(32 * width, round_nearest)
    last_channel = _make_divisible(1280 * max(1.0, width), round_nearest)
    m.conv_norm_act("features.0", 3, input_channel, 3, 2, act="ReLU6")
    index = 1
    for t, c, n, s in V2_SETTING:
        output_channel = _make_divisible(c * width, round_nearest)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = int(round(input_channel * t))  # noqa: RUF046 (as torchvision)
            prefix, j = f"features.{index}.conv", 0
            if t != 1:
                m.conv_norm_act(f"{prefix}.0", input_channel, hidden, 1, act="ReLU6")
                j = 1
            m.conv_norm_act(
                f"{prefix}.{j}", hidden, hidden, 3, stride, hidden, act="ReLU6"
            )
            m.conv(f"{prefix}.{j + 1}", hidden, output_channel, 1)
            m.bn(f"{prefix}.{j + 2}", output_channel)
            residual.append(stride == 1 and input_channel == output_channel)
            input_channel = output_channel
            index += 1
    m.conv_norm_act(f"features.{index}", input_channel, last_channel, 1, act="ReLU6")
    m.modules.append(("classifier.0", ("Dropout", 0.2)))
    m.linear("classifier.1", last_channel, num_classes)
    return m, residual


# input, kernel, expanded, out, SE, activation, stride (mobilenetv3._mobilenet_v3_conf)
V3_LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
V3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]


def torchvision_v3(setting, last_channel: int, width: float, num_classes=1000):
    m = Restated(eps=0.001, momentum=0.01)
    residual = []

    def adjust_channels(channels: int) -> int:  # InvertedResidualConfig
        return _make_divisible(channels * width, 8)

    first = adjust_channels(setting[0][0])
    m.conv_norm_act("features.0", 3, first, 3, 2, act="Hardswish")
    for index, (inp, k, exp, out, se, nl, s) in enumerate(setting, start=1):
        inp, exp, out = adjust_channels(inp), adjust_channels(exp), adjust_channels(out)
        act = "Hardswish" if nl == "HS" else "ReLU"
        prefix, j = f"features.{index}.block", 0
        if exp != inp:
            m.conv_norm_act(f"{prefix}.0", inp, exp, 1, act=act)
            j = 1
        m.conv_norm_act(f"{prefix}.{j}", exp, exp, k, s, exp, act=act)
        j += 1
        if se:
            squeeze = _make_divisible(exp // 4, 8)
            m.modules.append((f"{prefix}.{j}.avgpool", ("AdaptiveAvgPool2d",)))
            m.conv(f"{prefix}.{j}.fc1", exp, squeeze, 1, bias=True)
            m.conv(f"{prefix}.{j}.fc2", squeeze, exp, 1, bias=True)
            m.act(f"{prefix}.{j}.activation", "ReLU")
            m.act(f"{prefix}.{j}.scale_activation", "Hardsigmoid")
            j += 1
        m.conv_norm_act(f"{prefix}.{j}", exp, out, 1)
        residual.append(s == 1 and inp == out)
    last_in = adjust_channels(setting[-1][3])
    last_out = 6 * last_in
    m.conv_norm_act(
        f"features.{len(setting) + 1}", last_in, last_out, 1, act="Hardswish"
    )
    last = adjust_channels(last_channel)
    m.linear("classifier.0", last_out, last)
    m.act("classifier.1", "Hardswish")
    m.modules.append(("classifier.2", ("Dropout", 0.2)))
    m.linear("classifier.3", last, num_classes)
    return m, residual


def torchvision_model(name: str, width: float):
    if name == "v2":
        return torchvision_v2(width)
    if name == "v3_large":
        return torchvision_v3(V3_LARGE, 1280, width)
    return torchvision_v3(V3_SMALL, 1024, width)


# -------------------------------------------------------------------- our modules


def describe(module) -> tuple | None:
    """The same description for one of our leaf modules (None: not compared)."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        assert module.padding[0] == module.padding[1]
        return (
            "Conv2d",
            module.in_channels,
            module.out_channels,
            module.kernel_size[0],
            module.stride[0],
            module.padding[0],
            module.groups,
            module.bias is not None,
        )
    if isinstance(module, nn.BatchNorm2d):
        return ("BatchNorm2d", module.num_features, module.eps, module.momentum)
    if isinstance(module, nn.Linear):
        return ("Linear", module.in_features, module.out_features)
    if isinstance(module, nn.Dropout):
        return ("Dropout", module.p)
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid)):
        return (type(module).__name__,)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return ("AdaptiveAvgPool2d",)
    raise AssertionError(f"unexpected module {module!r}")


def our_model(name: str, width: float, tmp_path):
    _, _, model = build(
        SPECS / f"{name}.yaml", "torch", tmp_path, [f"width_multiplier={width}"]
    )
    return model


def our_leaves(model) -> list[tuple[str, tuple]]:
    leaves = []
    for key, module in model.named_modules():
        if key == "avgpool" or list(module.children()):
            continue  # containers; torchvision's V2 pools functionally, V3 with one
        leaves.append((key, describe(module)))
    return leaves


def state_shapes(model) -> list[tuple[str, tuple]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


# -------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(TORCHVISION_NAMES))
def test_restatement_matches_manifest(name):
    """The restated formulas reproduce torchvision's measured state_dict."""
    restated, _ = torchvision_model(name, 1.0)
    measured = MANIFEST[TORCHVISION_NAMES[name]]["state_dict"]
    assert restated.state == [(k, tuple(shape)) for k, shape in measured]


@pytest.mark.parametrize("name", list(TORCHVISION_NAMES))
def test_state_dict_matches_manifest(name, tmp_path):
    model = our_model(name, 1.0, tmp_path)
    measured = MANIFEST[TORCHVISION_NAMES[name]]["state_dict"]
    assert state_shapes(model) == [(k, tuple(shape)) for k, shape in measured]


WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.25, 1.4)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(TORCHVISION_NAMES))
def test_same_modules_at_any_width(name, width, tmp_path):
    """Keys, shapes, order, and every hyperparameter that decides the outputs."""
    restated, residual = torchvision_model(name, width)
    model = our_model(name, width, tmp_path)
    assert state_shapes(model) == restated.state
    assert our_leaves(model) == restated.modules
    blocks = [b for b in model.features if hasattr(b, "use_res_connect")]
    assert [b.use_res_connect for b in blocks] == residual


@pytest.mark.parametrize("width", (0.5, 1.0))
@pytest.mark.parametrize("name", list(TORCHVISION_NAMES))
def test_torchvision_state_dict_loads_strictly(name, width, tmp_path):
    """A state_dict of torchvision's keys and shapes loads with strict=True, every
    tensor lands where its key says (none silently ignored)."""
    import torch

    restated, _ = torchvision_model(name, width)
    gen = torch.Generator().manual_seed(0)
    state = {
        key: torch.randint(0, 5, shape, generator=gen)
        if key.endswith("num_batches_tracked")
        else torch.rand(shape, generator=gen) + 0.5
        for key, shape in restated.state
    }
    model = our_model(name, width, tmp_path)
    model.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
