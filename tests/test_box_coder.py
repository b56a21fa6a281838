"""BoxCoder (detection/modeling/box_coder.py): hand-computed cases and torchvision's BoxCoder."""
import math

import pytest
import torch
from torchvision.models.detection import _utils as det_utils

from random_boxes import random_boxes

from detection.modeling.box_coder import DEFAULT_SCALE_CLAMP, BoxCoder

WEIGHT_SETS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 7.0)]


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_encode_then_decode_round_trips(weights):
    src, dst = random_boxes(500, 0), random_boxes(500, 1)
    coder = BoxCoder(weights)
    deltas = coder.encode(src, dst)
    assert deltas.shape == (500, 4)
    torch.testing.assert_close(coder.decode(deltas, src), dst, rtol=0, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_decode_equals_torchvision_decode_single_including_clamp(weights):
    g = torch.Generator().manual_seed(2)
    boxes = random_boxes(300, 3)
    deltas = torch.randn(300, 4 * 3, generator=g) * 2.0
    deltas[:10, 2::4] = 50.0  # far beyond the clamp
    deltas[10:20, 3::4] = 50.0
    ref = det_utils.BoxCoder(weights).decode_single(deltas, boxes)
    got = BoxCoder(weights).decode(deltas, boxes)
    assert got.shape == (300, 12)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_encode_equals_torchvision_encode_single(weights):
    src, dst = random_boxes(300, 4), random_boxes(300, 5)
    ref = det_utils.BoxCoder(weights).encode_single(dst, src)  # (reference/gt, proposals)
    torch.testing.assert_close(BoxCoder(weights).encode(src, dst), ref, rtol=1e-5, atol=1e-5)


def test_encode_decode_hand_computed_single_box():
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # w 10, h 20, centre (5, 10)
    dst = torch.tensor([[2.0, 4.0, 22.0, 44.0]])  # w 20, h 40, centre (12, 24)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    expected = torch.tensor([[10 * 7 / 10, 10 * 14 / 20, 5 * math.log(2), 5 * math.log(2)]])
    torch.testing.assert_close(coder.encode(src, dst), expected)
    torch.testing.assert_close(coder.decode(expected, src), dst)
    # zero deltas leave the box unchanged; unit weights: dx=1 shifts by one width
    torch.testing.assert_close(coder.decode(torch.zeros(1, 4), src), src)
    shifted = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor([[1.0, -0.5, 0.0, 0.0]]), src)
    torch.testing.assert_close(shifted, torch.tensor([[10.0, -10.0, 20.0, 10.0]]))


def test_decode_clamps_large_dw_dh_but_not_large_negative_ones():
    box = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    out = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), box)
    scale = math.exp(DEFAULT_SCALE_CLAMP)
    assert scale == pytest.approx(1000.0 / 16)
    torch.testing.assert_close(out, torch.tensor([[8 - 8 * scale, 4 - 4 * scale, 8 + 8 * scale, 4 + 4 * scale]]))
    assert torch.isfinite(out).all()
    # with weights 5 the clamp applies to dw / 5
    out5 = BoxCoder((1.0, 1.0, 5.0, 5.0)).decode(torch.tensor([[0.0, 0.0, 5 * 1.0, 100.0]]), box)
    assert out5[0, 2] - out5[0, 0] == pytest.approx(16 * math.e, rel=1e-5)
    assert out5[0, 3] - out5[0, 1] == pytest.approx(8 * scale, rel=1e-5)
    tiny = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor([[0.0, 0.0, -100.0, -100.0]]), box)
    assert torch.isfinite(tiny).all() and (tiny[0, 2] - tiny[0, 0]) < 1e-6
    custom = BoxCoder((1.0, 1.0, 1.0, 1.0), scale_clamp=1.0).decode(torch.tensor([[0.0, 0.0, 3.0, 0.0]]), box)
    assert custom[0, 2] - custom[0, 0] == pytest.approx(16 * math.e, rel=1e-5)
