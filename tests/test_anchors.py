"""AnchorGenerator and cell anchors (detection/modeling/anchors.py): hand-computed cases and torchvision's
AnchorGenerator."""
import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TVImageList

from detection.modeling.anchors import AnchorGenerator, cell_anchors


def test_cell_anchors_hand_computed():
    a = cell_anchors([32], [0.5, 1.0, 2.0])
    r = 16 * math.sqrt(2)  # half of sqrt(32^2 / 0.5)
    expected = torch.tensor([
        [-r, -r / 2, r, r / 2],      # h/w = 0.5: wide
        [-16.0, -16.0, 16.0, 16.0],  # square
        [-r / 2, -r, r / 2, r],      # h/w = 2: tall
    ])
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, expected)


def test_cell_anchors_area_ratio_and_size_major_order():
    sizes, ratios = [32, 64, 128, 256], [0.5, 1.0, 2.0]
    a = cell_anchors(sizes, ratios).double()
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    for i, (s, r) in enumerate((s, r) for s in sizes for r in ratios):
        assert w[i] * h[i] == pytest.approx(s * s, rel=1e-5)
        assert h[i] / w[i] == pytest.approx(r, rel=1e-5)
    torch.testing.assert_close((a[:, :2] + a[:, 2:]) / 2, torch.zeros(12, 2, dtype=torch.float64))


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_anchor_grid_is_cell_major_anchor_minor_with_stride_and_offset(offset):
    gen = AnchorGenerator([32], [0.5, 2.0], stride=16, offset=offset)
    assert gen.num_anchors == 2
    h, w = 2, 3
    anchors = gen((h, w))
    assert anchors.shape == (h * w * 2, 4)
    cell = cell_anchors([32], [0.5, 2.0])
    for i in range(h):
        for j in range(w):
            cx, cy = (j + offset) * 16, (i + offset) * 16
            for a in range(2):
                expected = cell[a] + torch.tensor([cx, cy, cx, cy])
                torch.testing.assert_close(anchors[(i * w + j) * 2 + a], expected)
    # explicit spot check: last anchor, cell (1, 2), tall box
    r = 16 * math.sqrt(2)
    torch.testing.assert_close(anchors[-1], torch.tensor([
        (2 + offset) * 16 - r / 2, (1 + offset) * 16 - r, (2 + offset) * 16 + r / 2, (1 + offset) * 16 + r]))


def test_anchors_equal_torchvision_anchor_generator_after_rounding():
    sizes, ratios = (32, 64, 128), (0.5, 1.0, 2.0)
    fh, fw, stride = 5, 7, 16
    tv = TVAnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    images = TVImageList(torch.zeros(1, 3, fh * stride, fw * stride), [(fh * stride, fw * stride)])
    ref = tv(images, [torch.zeros(1, 8, fh, fw)])[0]
    ours = AnchorGenerator(list(sizes), list(ratios), stride=stride)
    exact = ours((fh, fw))
    ours.cell_anchors = ours.cell_anchors.round()  # torchvision rounds its cell anchors
    ours._cache.clear()
    rounded = ours((fh, fw))
    # ours is size-major (s * R + r), torchvision ratio-major (r * S + s) within a cell
    S, R = len(sizes), len(ratios)
    perm = torch.tensor([s * R + r for r in range(R) for s in range(S)])
    cells = fh * fw
    reorder = lambda x: x.view(cells, S * R, 4)[:, perm].reshape(-1, 4)  # noqa: E731
    assert ref.shape == exact.shape == (cells * 9, 4)
    torch.testing.assert_close(reorder(rounded), ref, rtol=0, atol=0)
    assert (reorder(exact) - ref).abs().max() <= 0.5


def test_anchor_cache_returns_the_same_tensor():
    gen = AnchorGenerator([64], [1.0], stride=16)
    a = gen((4, 6))
    assert gen((4, 6)) is a
    b = gen((6, 4))
    assert b is not a and b.shape == a.shape and not torch.equal(a, b)


def test_anchor_offset_out_of_range_raises():
    with pytest.raises(ValueError, match="offset"):
        AnchorGenerator([32], [1.0], stride=16, offset=1.0)
