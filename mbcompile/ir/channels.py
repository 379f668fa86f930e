"""Channel arithmetic: the one home for width scaling and rounding rules.

Every MobileNet implementation carries a copy of `make_divisible`; this is ours, and
the convention switches that decide when and how it is applied live beside it.
"""

from __future__ import annotations

import math


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor`, never dropping below 90%.

    Same rule as torchvision's `_make_divisible` and keras.applications' `_depth`.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def scale_width(channels: int, width: float, divisor: int, truncate: bool) -> int:
    """Channels of a layer after the width multiplier.

    `truncate` reproduces keras.applications' V1/V2 habit of `int(c * alpha)` before
    rounding; torchvision rounds the exact product.
    """
    value = channels * width
    return make_divisible(int(value) if truncate else value, divisor)


def expand_ratio(
    in_channels: int, ratio: float, rounding: str, divisor: int = 8
) -> int:
    """Expanded channels of an inverted residual given as a ratio of its input.

    "round": torchvision's `int(round(in * t))`; "floor": keras' `in * t` for integer
    t; "divisible": timm's `make_divisible(in * t)`.
    """
    value = in_channels * ratio
    if rounding == "divisible":
        return make_divisible(value, divisor)
    return round(value) if rounding == "round" else math.floor(value)
