"""AnchorHead (detection/modeling/anchor_head.py), the RPN's (K = 1) and the localizer's (K classes) head:
the dense outputs against the raw convolutions laid out by hand, and the head evaluated at sampled
anchors against the dense outputs."""
import pytest
import torch

from detection.modeling.anchor_head import AnchorHead

pytestmark = pytest.mark.usefixtures("single_thread")


def random_head(in_channels, num_anchors, num_classes, head_channels=0, seed=0):
    """An AnchorHead with random weights and biases (the init's zero biases would hide a wrong bias index)."""
    head = AnchorHead(in_channels, num_anchors, num_classes, head_channels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return head


def test_logits_and_deltas_at_sampled_anchors_equal_the_dense_convolution():
    head = random_head(8, 4, 3, head_channels=16)
    t = torch.randn(2, 16, 3, 5, generator=torch.Generator().manual_seed(3))
    logits, deltas = head.predict(t)
    img = torch.tensor([0, 1, 1, 0, 1])
    anc = torch.tensor([0, 7, 59, 33, 14])
    cls = torch.tensor([2, 0, 1, 1, 2])
    assert torch.allclose(head.logits_at(t, img, anc, cls), logits[img, anc, cls], atol=1e-6)
    assert torch.allclose(head.deltas_at(t, img, anc, cls), deltas[img, anc, cls], atol=1e-6)
