"""Channel arithmetic: the one home for width scaling and rounding rules.

Every MobileNet implementation carries a copy of `make_divisible`; this is ours, and
the convention switches that decide when and how it is applied live beside it.
"""

from __future__ import annotations

import math


def make_divisible(
    value: float, divisor: int, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round `value` to the nearest multiple of `divisor`, never dropping below
    `round_limit` of it (90%: one divisor more where rounding fell below).

    Same rule as torchvision's `_make_divisible`, keras.applications' `_depth` and
    timm's `make_divisible` (whose `round_limit` some of its models set: 0 never
    adds a divisor, 0.95 adds it sooner).
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def scale_width(
    channels: int, width: float, divisor: int, truncate: bool, round_limit: float = 0.9
) -> int:
    """Channels of a layer after the width multiplier.

    `truncate` reproduces keras.applications' V1/V2 habit of `int(c * alpha)` before
    rounding; torchvision rounds the exact product.
    """
    value = channels * width
    return make_divisible(int(value) if truncate else value, divisor, None, round_limit)


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
