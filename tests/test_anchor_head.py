"""AnchorHead (detection/modeling/anchor_head.py), the RPN's (K = 1) and the localizer's (K classes) head:
the dense outputs against the raw convolutions laid out by hand, and the head evaluated at sampled
anchors against the dense outputs."""
import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("num_classes", [1, 3])
def test_head_outputs_equal_the_raw_convolutions_laid_out_by_hand(num_classes):
    b, c, h, w, a, k = 2, 4, 2, 3, 3, num_classes
    head = random_head(c, a, k, head_channels=5)
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, deltas = head(x)
        t = F.relu(F.conv2d(x, head.conv.weight, head.conv.bias, padding=1))
        raw_logits = F.conv2d(t, head.objectness_logits.weight, head.objectness_logits.bias)  # (B, A*K, H, W)
        raw_deltas = F.conv2d(t, head.anchor_deltas.weight, head.anchor_deltas.bias)  # (B, A*K*4, H, W)
    assert logits.shape == (b, h * w * a, k) and deltas.shape == (b, h * w * a, k, 4)
    # anchor n = (row * W + column) * A + a (the anchor generator's order); channel a * K + class
    for i in range(b):
        for y in range(h):
            for x_ in range(w):
                for j in range(a):
                    n = (y * w + x_) * a + j
                    for cls in range(k):
                        ch = j * k + cls
                        assert logits[i, n, cls] == raw_logits[i, ch, y, x_]
                        assert torch.equal(deltas[i, n, cls], raw_deltas[i, ch * 4:ch * 4 + 4, y, x_])


def test_logits_and_deltas_at_sampled_anchors_equal_the_dense_convolution():
    head = random_head(8, 4, 3, head_channels=16)
    t = torch.randn(2, 16, 3, 5, generator=torch.Generator().manual_seed(3))
    logits, deltas = head.predict(t)
    img = torch.tensor([0, 1, 1, 0, 1])
    anc = torch.tensor([0, 7, 59, 33, 14])
    cls = torch.tensor([2, 0, 1, 1, 2])
    assert torch.allclose(head.logits_at(t, img, anc, cls), logits[img, anc, cls], atol=1e-6)
    assert torch.allclose(head.deltas_at(t, img, anc, cls), deltas[img, anc, cls], atol=1e-6)
