"""The C4 split (detection/modeling/backbone/c4.py): the stride-16 trunk (conv1..conv4_x) and res5 for
the RoI head, equal to the full ResNet."""
import pytest
import torch
import torch.nn as nn

from backbones import rand_image, resnet_cfg
from norms import randomise_norms

from detection.modeling import build_c4_backbone, build_resnet

pytestmark = pytest.mark.usefixtures("single_thread")


def test_c4_trunk_is_stride_16_and_res5_halves_the_rois():
    torch.manual_seed(0)
    trunk, res5 = build_c4_backbone(resnet_cfg(DEPTH=50, NORM="FrozenBN"))
    assert not hasattr(trunk, "res5") and trunk.out_channels == 1024
    with torch.no_grad():
        feats = trunk.eval()(rand_image(96, 128))
        assert list(feats) == ["res4"]
        assert feats["res4"].shape == (1, 1024, 6, 8)
        rois = torch.randn(3, 1024, 14, 14)
        assert res5.eval()(rois).shape == (3, 2048, 7, 7)


@pytest.mark.parametrize("depth,norm", [(50, "BN"), (18, "GN")])
def test_c4_trunk_then_res5_equals_the_full_resnet(depth, norm):
    torch.manual_seed(0)
    cfg = resnet_cfg(DEPTH=depth, NORM=norm)
    full = build_resnet(cfg, out_features=["res4", "res5"])
    randomise_norms(full)
    full.eval()
    trunk, res5 = build_c4_backbone(cfg)
    state = full.state_dict()
    trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("res5.")})
    res5.load_state_dict({k[len("res5."):]: v for k, v in state.items() if k.startswith("res5.")})
    trunk.eval(), res5.eval()
    x = rand_image(64, 96)
    with torch.no_grad():
        ref = full(x)
        r4 = trunk(x)["res4"]
        r5 = res5(r4)
    torch.testing.assert_close(r4, ref["res4"], rtol=0, atol=0)
    torch.testing.assert_close(r5, ref["res5"], rtol=1e-6, atol=1e-6)


def test_c4_freeze_at_5_freezes_res5_and_out_of_range_raises():
    trunk, res5 = build_c4_backbone(resnet_cfg(DEPTH=18, NORM="BN", FREEZE_AT=5))
    assert all(not p.requires_grad for p in trunk.parameters())
    assert all(not p.requires_grad for p in res5.parameters())
    assert not [m for m in res5.modules() if isinstance(m, nn.BatchNorm2d)]
    trunk2, res52 = build_c4_backbone(resnet_cfg(DEPTH=18, NORM="BN", FREEZE_AT=4))
    assert all(not p.requires_grad for p in trunk2.parameters())
    assert all(p.requires_grad for p in res52.parameters())
    with pytest.raises(ValueError, match="FREEZE_AT"):
        build_c4_backbone(resnet_cfg(DEPTH=18, FREEZE_AT=6))
