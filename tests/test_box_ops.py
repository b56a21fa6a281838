"""Box geometry (detection/modeling/box_ops.py): hand-computed cases."""
import torch

from detection.modeling.box_ops import anchors_inside, clip_boxes, first_k_per_group


def test_first_k_per_group_hand_computed():
    group = torch.tensor([1, 0, 1, 2, 0, 1, 1])
    assert first_k_per_group(group, 2, 4).tolist() == [1, 4, 0, 2, 3]
    assert first_k_per_group(group, 3, 4).tolist() == [1, 4, 0, 2, 5, 3]
    assert first_k_per_group(group, 0, 4).tolist() == []
    assert first_k_per_group(torch.zeros(0, dtype=torch.long), 5, 2).tolist() == []


def test_clip_boxes_hand_computed():
    boxes = torch.tensor([[-5.0, -3.0, 50.0, 40.0], [10.0, 20.0, 30.0, 200.0], [45.0, 35.0, 60.0, 50.0]])
    out = clip_boxes(boxes, torch.tensor([30, 40]))  # h 30, w 40
    assert out.tolist() == [[0.0, 0.0, 40.0, 30.0], [10.0, 20.0, 30.0, 30.0], [40.0, 30.0, 40.0, 30.0]]
    per_box = clip_boxes(boxes, torch.tensor([[30, 40], [100, 100], [100, 50]]))
    assert per_box.tolist() == [[0.0, 0.0, 40.0, 30.0], [10.0, 20.0, 30.0, 100.0], [45.0, 35.0, 50.0, 50.0]]


def test_anchors_inside_hand_computed():
    anchors = torch.tensor([[-10.0, 0.0, 10.0, 10.0],   # centre (0, 5), crosses the left border by 10
                            [30.0, 0.0, 50.0, 10.0],    # centre (40, 5): in the padding of a 32-wide image
                            [0.0, 0.0, 20.0, 20.0],
                            [15.0, 15.0, 45.0, 45.0]])  # centre (30, 30), crosses right/bottom by 13
    sizes = torch.tensor([[32, 32], [50, 50]])
    assert anchors_inside(anchors, sizes, -1.0).tolist() == [[True, False, True, True], [True] * 4]
    # continuous coordinates: an anchor ending exactly on the border (x2 = 50 = w) is inside
    assert anchors_inside(anchors, sizes, 0.0).tolist() == [[False, False, True, False],
                                                             [False, True, True, True]]
    assert anchors_inside(anchors, sizes, 15.0).tolist() == [[True, False, True, True], [True] * 4]
