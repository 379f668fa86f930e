"""Channel rounding rules (the one home of make_divisible)."""

import pytest

from mbcompile.ir.channels import expand_ratio, make_divisible, scale_width


@pytest.mark.parametrize(
    "value,divisor,expected",
    [
        (32, 8, 32),
        (24, 8, 24),
        (16 * 0.35, 8, 8),  # never below the divisor
        (12, 8, 16),  # 12 rounds to 16 (8 would lose more than 10%)
        (44.8, 8, 48),
        (41.6, 8, 40),
        (100, 1, 100),
        (1280 * 1.3, 8, 1664),
    ],
)
def test_make_divisible(value, divisor, expected):
    assert make_divisible(value, divisor) == expected


def test_truncating_width_scaling_matches_keras_v1():
    # keras.applications.MobileNet: int(filters * alpha), no rounding to multiples.
    assert scale_width(32, 0.75, 1, truncate=True) == 24
    assert scale_width(1024, 0.25, 1, truncate=True) == 256
    assert scale_width(64, 0.35, 1, truncate=True) == 22


def test_expansion_rounding():
    assert expand_ratio(24, 6, "round") == 144
    assert expand_ratio(20, 2.5, "round") == 50
    assert expand_ratio(10, 2.55, "round") == 26  # int(round(25.5)) in torchvision
    assert expand_ratio(10, 2.55, "floor") == 25


def test_timm_expansion_is_make_divisible_of_the_product():
    # timm's _efficientnet_blocks: mid_chs = make_divisible(in_chs * exp_ratio), as
    # its MobileNetV3-Large and -Small tables give them (80*2.3 -> 184, 24*3.67 -> 88).
    assert expand_ratio(80, 2.3, "divisible") == 184
    assert expand_ratio(24, 3.67, "divisible") == 88
    assert expand_ratio(16, 4.5, "divisible") == 72
    assert expand_ratio(20, 2.5, "divisible") == 48  # round() would give 50
