"""Box geometry (detection/modeling/box_ops.py): hand-computed cases."""
import torch

from detection.modeling.box_ops import anchors_inside, boxes_to_rois, clip_boxes, first_k_per_group, to_original


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


def test_boxes_to_rois_prefixes_each_box_with_its_image_index():
    boxes = [torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), torch.zeros(0, 4),
             torch.tensor([[9.0, 10.0, 11.0, 12.0]])]
    assert boxes_to_rois(boxes).tolist() == [[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [2, 9, 10, 11, 12]]


def test_to_original_of_a_one_crop_input_hand_computed():
    # a 64x64 crop at (x0, y0) = (10, 20) of a 100x150 (h x w) resize of a 150x300 original:
    # shift by the crop origin, then scale x by 300 / 150 = 2 and y by 150 / 100 = 1.5
    sample = {"height": 150, "width": 300, "crop_origin": (10, 20), "resized_size": (100, 150)}
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0],
                          [50.0, 50.0, 70.0, 60.0],
                          [-20.0, 0.0, 150.0, 10.0]])  # reaches past the crop and the original: clipped
    out = to_original(boxes, sample, (64, 64))
    torch.testing.assert_close(out, torch.tensor([[20.0, 30.0, 84.0, 78.0],
                                                  [120.0, 105.0, 160.0, 120.0],
                                                  [0.0, 30.0, 300.0, 45.0]]))
    # batched (..., 4) boxes map row by row
    torch.testing.assert_close(to_original(boxes.expand(2, 3, 4), sample, (64, 64)), out.expand(2, 3, 4))


def test_to_original_of_a_whole_resized_input_scales_per_axis_and_clips():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [140.0, 90.0, 160.0, 110.0]])
    # the input is the whole 100x150 resize of a 150x300 original: x * 2, y * 1.5, clipped to 300 x 150
    out = to_original(boxes, {"height": 150, "width": 300}, (100, 150))
    assert out.tolist() == [[20.0, 30.0, 60.0, 60.0], [280.0, 135.0, 300.0, 150.0]]
    # no original size recorded: the input is the original, boxes are only clipped to it
    assert to_original(boxes, {}, (100, 150)).tolist() == [[10.0, 20.0, 30.0, 40.0], [140.0, 90.0, 150.0, 100.0]]
