"""DatasetMapper (detection/data/mapper.py) at localization test time: the test sizes of the dense and the
1-crop modes."""
import pytest
import torch

from tiny_localizer import DENSE, loc_record, tiny_cfg

from detection.data.mapper import DatasetMapper


def test_dense_mapper_adds_the_whole_image_at_the_other_sizes(tmp_path):
    record = loc_record(tmp_path)
    for fmt in ("BGR", "RGB"):
        def mapped(sizes):
            cfg = tiny_cfg(*DENSE, "INPUT.FORMAT", fmt, "INPUT.LOC_TEST_SIZES", str(sizes))
            return DatasetMapper(cfg, is_train=False, loc=True)(record)

        single, multi = mapped([64]), mapped([64, 96, 160])
        assert "extra_scales" not in single
        assert torch.equal(multi["image"], single["image"]) and multi["image"].shape == (3, 64, 107)
        # 90x150 at shorter side 96: 96x160; at 160: 160x267, over MAX_SIZE_TEST 200 so 120x200
        assert [tuple(x.shape) for x in multi["extra_scales"]] == [(3, 96, 160), (3, 120, 200)]
        for x, size in zip(multi["extra_scales"], (96, 160)):  # resized and channel-ordered as "image" at that size
            assert x.dtype == torch.uint8 and torch.equal(x, mapped([size])["image"])


def test_one_crop_mapper_takes_one_test_size():
    with pytest.raises(ValueError, match="LOC_TEST_SIZES"):
        DatasetMapper(tiny_cfg("INPUT.LOC_TEST_SIZES", "[64, 96]"), is_train=False, loc=True)
    DatasetMapper(tiny_cfg("INPUT.LOC_TEST_SIZES", "[64, 96]"), is_train=True, loc=True)  # training ignores them
