"""Predictor (detection/engine/predictor.py): it maps an image as the test mapper does."""
import cv2
import numpy as np
import pytest
import torch

from tiny_localizer import DENSE, loc_record, tiny_cfg

from detection.data.mapper import DatasetMapper
from detection.engine.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")


def test_predictor_tests_every_size_as_the_mapper(tmp_path):
    record = loc_record(tmp_path)
    torch.manual_seed(0)
    cfg = tiny_cfg(*DENSE, "INPUT.LOC_TEST_SIZES", "[64, 96]", "DATASETS.ROOT", str(tmp_path))
    predictor = Predictor(cfg)
    got = predictor(cv2.imread(record["file_name"]))
    sample = DatasetMapper(cfg, is_train=False, loc=True)(record)
    assert len(sample["extra_scales"]) == 1
    expected = predictor.model([sample])[0]
    np.testing.assert_array_equal(got["boxes"], expected["boxes"].numpy())
    np.testing.assert_array_equal(got["scores"], expected["scores"].numpy())
