"""ROIPooler (detection/modeling/pooler.py): torchvision's roi_align / roi_pool and a hand-computed ramp."""
import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from detection.modeling.pooler import ROIPooler


def _pool_inputs():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 12, 16, generator=g)
    boxes = [torch.tensor([[10.0, 20.0, 100.0, 150.0], [0.0, 0.0, 255.0, 191.0], [33.3, 47.1, 60.2, 70.9]]),
             torch.tensor([[5.5, 6.5, 250.0, 100.0]])]
    rois = torch.tensor([[0, 10.0, 20.0, 100.0, 150.0], [0, 0.0, 0.0, 255.0, 191.0], [0, 33.3, 47.1, 60.2, 70.9],
                         [1, 5.5, 6.5, 250.0, 100.0]])
    return features, boxes, rois


@pytest.mark.parametrize("pooler_type,aligned", [("ROIAlign", False), ("ROIAlignV2", True)])
def test_roi_align_pooler_equals_torchvision(pooler_type, aligned):
    features, boxes, rois = _pool_inputs()
    out = ROIPooler(7, 1 / 16, pooler_type, sampling_ratio=0)(features, boxes)
    assert out.shape == (4, 8, 7, 7)
    torch.testing.assert_close(out, roi_align(features, rois, (7, 7), 1 / 16, 0, aligned=aligned), rtol=0, atol=0)
    other = roi_align(features, rois, (7, 7), 1 / 16, 0, aligned=not aligned)
    assert not torch.allclose(out, other, atol=1e-3)
    out2 = ROIPooler(7, 1 / 16, pooler_type, sampling_ratio=2)(features, boxes)
    torch.testing.assert_close(out2, roi_align(features, rois, (7, 7), 1 / 16, 2, aligned=aligned), rtol=0, atol=0)


def test_roi_pool_pooler_equals_torchvision():
    features, boxes, rois = _pool_inputs()
    out = ROIPooler(6, 1 / 16, "ROIPool")(features, boxes)
    torch.testing.assert_close(out, roi_pool(features, rois, (6, 6), 1 / 16), rtol=0, atol=0)


def test_roi_align_v2_samples_a_ramp_at_half_pixel_shifted_bin_centres():
    ramp = torch.arange(16.0).view(1, 1, 1, 16).expand(2, 1, 8, 16).contiguous()  # value = column index
    ramp[1] += 100.0  # second image: offset, to check the image index
    boxes = [torch.tensor([[32.0, 16.0, 96.0, 80.0]]), torch.tensor([[40.0, 16.0, 120.0, 80.0]])]
    v2 = ROIPooler(4, 1 / 16, "ROIAlignV2")(ramp, boxes)
    v1 = ROIPooler(4, 1 / 16, "ROIAlign")(ramp, boxes)
    # image 0: x in feature units 2..6, bin width 1; V2 shifts by -0.5
    torch.testing.assert_close(v2[0, 0], torch.tensor([2.0, 3.0, 4.0, 5.0]).expand(4, 4))
    torch.testing.assert_close(v1[0, 0], torch.tensor([2.5, 3.5, 4.5, 5.5]).expand(4, 4))
    # image 1: x 2.5..7.5, bin width 1.25
    expected = 100.0 + 2.5 - 0.5 + (torch.arange(4.0) + 0.5) * 1.25
    torch.testing.assert_close(v2[1, 0], expected.expand(4, 4))


def test_unknown_pooler_type_raises():
    with pytest.raises(ValueError, match="POOLER_TYPE"):
        ROIPooler(7, 1 / 16, "ROIWarp")


@pytest.mark.parametrize("pooler_type", ["ROIPool", "ROIAlignV2"])
def test_inference_pools_roi_chunks_in_parallel_threads_with_the_same_values(pooler_type, monkeypatch):
    import detection.modeling.pooler as pooler_module

    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 8, 20, 24, generator=g).contiguous(memory_format=torch.channels_last)
    xy = torch.rand(150, 2, generator=g) * 200
    rois = torch.cat([torch.randint(0, 2, (150, 1), generator=g).float(), xy, xy + 20 + torch.rand(150, 2) * 150], 1)
    pooler = ROIPooler(7, 1 / 16, pooler_type)
    calls = []
    single = pooler._pool
    monkeypatch.setattr(pooler, "_pool", lambda f, r: calls.append(len(r)) or single(f, r))
    monkeypatch.setattr(pooler_module, "MIN_OUTPUTS_PER_THREAD", 50 * 8 * 7 * 7)  # 50 RoIs a thread
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with torch.no_grad():
            out = pooler.pool_rois(features, rois)
        assert calls == [50, 50, 50]  # one chunk per thread
        torch.testing.assert_close(out, single(features, rois), rtol=0, atol=0)
        calls.clear()
        with torch.no_grad():
            pooler.pool_rois(features, rois[:99])  # under two threads' worth: one call
        assert calls == [99]
        calls.clear()
        pooler.pool_rois(features.requires_grad_(), rois)  # training: one call, one backward order
        assert calls == [150]
    finally:
        torch.set_num_threads(old)


def test_a_trace_records_the_pooling_of_many_rois_with_several_threads(monkeypatch):
    import detection.modeling.pooler as pooler_module

    monkeypatch.setattr(pooler_module, "MIN_OUTPUTS_PER_THREAD", 1)
    # the threads' ops are invisible to the tracer: traced, the pooling must be one call in this thread,
    # or the export would hold the pooled features of the example image as a constant
    g = torch.Generator().manual_seed(2)
    features = torch.randn(1, 8, 20, 24, generator=g)
    xy = torch.rand(150, 2, generator=g) * 200
    rois = torch.cat([torch.zeros(150, 1), xy, xy + 40], 1)
    pooler = ROIPooler(7, 1 / 16, "ROIPool")
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with torch.no_grad():
            traced = torch.jit.trace(lambda f, r: pooler.pool_rois(f, r), (features, rois), check_trace=False)
            other = torch.randn(1, 8, 20, 24, generator=g)
            torch.testing.assert_close(traced(other, rois), roi_pool(other, rois, (7, 7), 1 / 16), rtol=0, atol=0)
    finally:
        torch.set_num_threads(old)
