"""Wrong shapes, dtypes and channel counts get an error naming the argument, expected vs got."""

from __future__ import annotations

import pytest
import torch

from edvr_fast.errors import InputError
from edvr_fast.ops import DCNPack, ModulatedDeformConv2d, modulated_deform_conv2d


def _args():
    x = torch.randn(2, 4, 6, 6)
    return x, torch.zeros(2, 18, 6, 6), torch.ones(2, 9, 6, 6), torch.randn(3, 4, 3, 3), torch.zeros(3)


@pytest.mark.parametrize("mutate, words", [
    (lambda a: (a[0][0],) + a[1:], ["input", "4-D", "(4, 6, 6)"]),
    (lambda a: (a[0], a[1][:, :10]) + a[2:], ["offset", "(2, 18, 6, 6)", "(2, 10, 6, 6)"]),
    (lambda a: (a[0], a[1], a[2][:, :4]) + a[3:], ["mask", "(2, 9, 6, 6)", "(2, 4, 6, 6)"]),
    (lambda a: a[:3] + (torch.randn(3, 5, 3, 3),) + a[4:], ["weight", "5", "input with 4"]),
    (lambda a: a[:4] + (torch.zeros(7),), ["bias", "(3,)", "(7,)"]),
    (lambda a: (a[0].int(),) + a[1:], ["input", "torch.int32"]),
    (lambda a: (a[0], a[1].double()) + a[2:], ["dtype", "torch.float64"]),
])
def test_wrong_input_named(mutate, words):
    with pytest.raises(InputError) as exc:
        modulated_deform_conv2d(*mutate(_args()), padding=1)
    for w in words:
        assert w in str(exc.value)


def test_offset_groups_must_divide_channels():
    x, off, m, w, b = _args()
    with pytest.raises(InputError, match="offset_groups=3"):
        modulated_deform_conv2d(x, off, m, w, b, padding=1, offset_groups=3)


def test_too_small_input():
    with pytest.raises(InputError, match="too small"):
        modulated_deform_conv2d(torch.randn(1, 1, 2, 2), torch.zeros(1, 18, 1, 1), torch.ones(1, 9, 1, 1),
                                torch.randn(1, 1, 3, 3))


def test_module_constructor_checks():
    with pytest.raises(InputError, match="groups=3"):
        ModulatedDeformConv2d(4, 6, 3, groups=3)
    with pytest.raises(InputError, match="offset_groups=3"):
        DCNPack(4, 4, 3, offset_groups=3)
