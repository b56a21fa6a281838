"""merge_top_boxes (detection/modeling/class_merge.py): box voting on hand-computed boxes."""
import torch

from detection.modeling.class_merge import merge_top_boxes


def test_merge_is_score_weighted_mean_of_boxes_overlapping_the_top_one():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])  # IoU(0, 1) = 81 / 119
    scores = torch.tensor([0.9, 0.6, 0.5])
    merged = merge_top_boxes(boxes, scores, 0.5)
    assert torch.allclose(merged, torch.tensor([0.4, 0.4, 10.4, 10.4]))
    assert torch.allclose(merge_top_boxes(boxes, scores, 0.7), boxes[0])  # box 1 below the IoU threshold
    batched = merge_top_boxes(boxes.expand(2, 3, 3, 4), scores.expand(2, 3, 3), 0.5)
    assert batched.shape == (2, 3, 4) and torch.allclose(batched, merged.expand(2, 3, 4))


def test_merge_with_zero_scores_is_the_plain_mean_and_one_candidate_is_itself():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    assert torch.allclose(merge_top_boxes(boxes, torch.zeros(3), 0.5), torch.tensor([0.5, 0.5, 10.5, 10.5]))
    assert torch.equal(merge_top_boxes(boxes[1:2], torch.tensor([0.3]), 0.5), boxes[1])
