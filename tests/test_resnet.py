"""The ResNet family (detection/modeling/backbone/resnet.py): depths, A/B/C shortcuts, stride placement,
norms, plain, freezing, zero-init residual, custom stage blocks; against torchvision's resnets."""
import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from backbones import rand_image, resnet_cfg
from norms import randomise_norms

from detection.layers import ConvNorm
from detection.modeling import build_resnet
from detection.modeling.backbone import BottleneckBlock
from detection.modeling.backbone.resnet import ZeroPadShortcut

STAGES = ("res2", "res3", "res4", "res5")


pytestmark = pytest.mark.usefixtures("single_thread")


NORM_TYPES = {"FrozenBN": FrozenBatchNorm2d, "BN": nn.BatchNorm2d, "GN": nn.GroupNorm, "SyncBN": nn.SyncBatchNorm}


def torchvision_to_ours(name: str) -> str:
    """torchvision resnet parameter names -> ours (Detectron2 layout)."""
    name = re.sub(r"^conv1\.", "stem.conv1.", name)
    name = re.sub(r"^bn1\.", "stem.conv1.norm.", name)
    name = re.sub(r"^fc\.", "linear.", name)
    m = re.match(r"^layer(\d)\.(\d+)\.(.*)$", name)
    if m:
        stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
        rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
        rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
        rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
        name = f"res{stage}.{block}.{rest}"
    return name


# ----------------------------------------------------------------------------- torchvision equivalence


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_param_count_and_shapes_equal_torchvision_resnet(depth):
    with torch.device("meta"):  # structure only: no memory, no init cost
        ours = build_resnet(resnet_cfg(DEPTH=depth), num_classes=1000)
        ref = getattr(torchvision.models, f"resnet{depth}")()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {torchvision_to_ours(k): tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours_shapes == ref_shapes


@pytest.mark.parametrize("depth", [18, 50])
def test_logits_equal_torchvision_resnet_with_the_same_weights(depth):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, f"resnet{depth}")().eval()
    randomise_norms(ref)
    ours = build_resnet(resnet_cfg(DEPTH=depth), num_classes=1000).eval()
    ours.load_state_dict({torchvision_to_ours(k): v for k, v in ref.state_dict().items()})
    x = rand_image(64, 80, b=2)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)["linear"]
    assert expected.abs().max() > 1e-3  # not a degenerate all-zero comparison
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- shortcuts x norms


def _block_changes_shape(block):
    conv_first = block.conv1
    last = block.conv3 if isinstance(block, BottleneckBlock) else block.conv2
    stride = max(block.conv1.stride[0], block.conv2.stride[0])
    return stride != 1 or conv_first.in_channels != last.out_channels


@pytest.mark.parametrize("norm", ["FrozenBN", "BN", "GN"])
@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
@pytest.mark.parametrize("depth", [18, 50])
def test_shortcut_option_and_norm_build_and_run(depth, shortcut, norm):
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=depth, SHORTCUT=shortcut, NORM=norm),
                         out_features=list(STAGES))
    for name, block in model.blocks():
        changes = _block_changes_shape(block)
        if shortcut == "C":
            assert isinstance(block.shortcut, ConvNorm), name
        elif shortcut == "B":
            assert isinstance(block.shortcut, ConvNorm) if changes else block.shortcut is None, name
        else:
            assert isinstance(block.shortcut, ZeroPadShortcut) if changes else block.shortcut is None, name
    if shortcut == "A":
        assert not [n for n, _ in model.named_parameters() if "shortcut" in n]
    norm_cls = NORM_TYPES[norm]
    norms = [m for m in model.modules() if isinstance(m, tuple(NORM_TYPES.values()))]
    assert norms and all(type(m) is norm_cls for m in norms)
    out = model(rand_image(64, 64, b=2))
    channels = (64, 128, 256, 512) if depth == 18 else (256, 512, 1024, 2048)
    for (stage, c), s in zip(zip(STAGES, channels), (16, 8, 4, 2)):
        assert out[stage].shape == (2, c, s, s)
        assert torch.isfinite(out[stage]).all()
    assert (out["res5"] > 0).any()


def test_shortcut_c_has_more_params_than_b_by_the_identity_projections():
    with torch.device("meta"):
        b = build_resnet(resnet_cfg(DEPTH=18, SHORTCUT="B"))
        c = build_resnet(resnet_cfg(DEPTH=18, SHORTCUT="C"))
    # B projects only res3.0, res4.0, res5.0; C also res2.0, res2.1, res3.1, res4.1, res5.1 (1x1 conv + BN).
    extra = sum(ch * ch + 2 * ch for ch in (64, 64, 128, 256, 512))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(c) - count(b) == extra


@pytest.mark.parametrize("norm", ["SyncBN"])
def test_syncbn_constructs(norm):
    with torch.device("meta"):
        model = build_resnet(resnet_cfg(DEPTH=50, NORM=norm))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is nn.SyncBatchNorm for m in norms)


def test_gn_uses_configured_groups():
    with torch.device("meta"):
        model = build_resnet(resnet_cfg(DEPTH=18, NORM="GN", GN_GROUPS=16))
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert gns and all(m.num_groups == 16 for m in gns)


def test_unknown_norm_and_shortcut_raise():
    with pytest.raises(ValueError, match="norm"):
        build_resnet(resnet_cfg(DEPTH=18, NORM="LN"))
    with pytest.raises(ValueError, match="shortcut"):
        build_resnet(resnet_cfg(DEPTH=18, SHORTCUT="D"))


def test_shortcut_a_block_is_relu_of_branch_plus_zero_padded_subsampled_input():
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=18, SHORTCUT="A", NORM="GN")).eval()
    block = model.res3[0]  # 64 -> 128 channels, stride 2
    x = torch.randn(2, 64, 9, 10)
    sub = x[:, :, ::2, ::2]  # 1x1 stride-2 sampling: rows/cols 0, 2, 4, ...
    assert sub.shape == (2, 64, 5, 5)
    padded = torch.cat((sub, torch.zeros(2, 64, 5, 5)), dim=1)
    with torch.no_grad():
        expected = F.relu(block.branch(x) + padded)
        got = block(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the padded channels see only the branch
    torch.testing.assert_close(got[:, 64:], F.relu(block.branch(x)[:, 64:]), rtol=0, atol=0)

    # bottleneck res2.0: 64 -> 256 channels at stride 1: pad only
    model50 = build_resnet(resnet_cfg(DEPTH=50, SHORTCUT="A", NORM="GN")).eval()
    b0 = model50.res2[0]
    y = torch.randn(1, 64, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(b0(y), F.relu(b0.branch(y) + torch.cat((y, torch.zeros(1, 192, 6, 6)), 1)))


def test_shortcut_a_has_the_parameters_of_the_plain_network():
    with torch.device("meta"):
        a = build_resnet(resnet_cfg(DEPTH=34, SHORTCUT="A"))
        plain = build_resnet(resnet_cfg(DEPTH=34, RESIDUAL=False))
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in plain.parameters())


def test_identity_block_is_relu_of_branch_plus_input():
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=18, SHORTCUT="B", NORM="GN")).eval()
    block = model.res2[1]
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(block.branch(x) + x), rtol=0, atol=0)


def test_shortcut_c_projects_identity_blocks():
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=18, SHORTCUT="C", NORM="GN")).eval()
    block = model.res2[1]  # same shape in and out, still projected
    x = torch.randn(1, 64, 8, 8)
    sc = block.shortcut
    with torch.no_grad():
        proj = sc.norm(F.conv2d(x, sc.weight))
        torch.testing.assert_close(block(x), F.relu(block.branch(x) + proj), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(block(x), F.relu(block.branch(x) + x), atol=1e-3)


# ----------------------------------------------------------------------------- stride placement


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_bottleneck_stride_placement(stride_in_1x1):
    with torch.device("meta"):
        model = build_resnet(resnet_cfg(DEPTH=50, STRIDE_IN_1X1=stride_in_1x1))
    for stage in STAGES:
        for i, block in enumerate(getattr(model, stage)):
            assert block.conv3.stride == (1, 1)
            if i == 0 and stage != "res2":
                expected = ((2, 2), (1, 1)) if stride_in_1x1 else ((1, 1), (2, 2))
                assert block.shortcut.stride == (2, 2)
            else:
                expected = ((1, 1), (1, 1))
            assert (block.conv1.stride, block.conv2.stride) == expected, f"{stage}.{i}"
            assert block.conv1.kernel_size == (1, 1) and block.conv2.kernel_size == (3, 3)


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_basic_block_stride_is_in_the_first_3x3(stride_in_1x1):
    with torch.device("meta"):
        model = build_resnet(resnet_cfg(DEPTH=18, STRIDE_IN_1X1=stride_in_1x1))
    for stage in ("res3", "res4", "res5"):
        first = getattr(model, stage)[0]
        assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)


def test_stride_placement_changes_the_function_but_not_the_shapes():
    torch.manual_seed(0)
    a = build_resnet(resnet_cfg(DEPTH=50, NORM="FrozenBN", STRIDE_IN_1X1=True)).eval()
    b = build_resnet(resnet_cfg(DEPTH=50, NORM="FrozenBN", STRIDE_IN_1X1=False)).eval()
    b.load_state_dict(a.state_dict())  # identical weights, only the stride position differs
    x = rand_image()
    with torch.no_grad():
        ya, yb = a(x)["res5"], b(x)["res5"]
    assert ya.shape == yb.shape == (1, 2048, 2, 2)
    assert not torch.allclose(ya, yb, atol=1e-4)


# ----------------------------------------------------------------------------- strides, channels


@pytest.mark.parametrize("depth,channels", [(18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))])
def test_output_strides_and_channels(depth, channels):
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=depth, NORM="FrozenBN"), out_features=["stem", *STAGES]).eval()
    with torch.no_grad():
        out = model(rand_image(128, 96))
    assert out["stem"].shape == (1, 64, 32, 24)
    for stage, c, stride in zip(STAGES, channels, (4, 8, 16, 32)):
        assert out[stage].shape == (1, c, 128 // stride, 96 // stride), stage
    assert model.out_channels == channels[-1]


def test_res5_dilation_2_keeps_the_stride_16_resolution():
    with torch.device("meta"):
        model = build_resnet(resnet_cfg(DEPTH=50, RES5_DILATION=2))
    first = model.res5[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (1, 1) and first.conv2.dilation == (2, 2)
    torch.manual_seed(0)
    real = build_resnet(resnet_cfg(DEPTH=18, RES5_DILATION=2, NORM="FrozenBN"), out_features=["res4", "res5"])
    with torch.no_grad():
        out = real.eval()(rand_image(64, 64))
    assert out["res4"].shape[-2:] == out["res5"].shape[-2:] == (4, 4)


# ----------------------------------------------------------------------------- plain network


@pytest.mark.parametrize("depth", [18, 50])
def test_plain_network_has_no_shortcuts_and_block_is_relu_of_branch(depth):
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=depth, RESIDUAL=False, NORM="GN")).eval()
    assert all(block.shortcut is None and block.residual is False for _, block in model.blocks())
    assert not [n for n, _ in model.named_parameters() if "shortcut" in n]
    block = model.res3[1]
    c = block.conv1.in_channels
    x = torch.rand(1, c, 6, 6)
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out, F.relu(block.branch(x)), rtol=0, atol=0)
        assert not torch.allclose(out, F.relu(block.branch(x) + x), atol=1e-3)
        first = model.res3[0]  # shape-changing block: also plain
        y = torch.rand(1, first.conv1.in_channels, 8, 8)
        torch.testing.assert_close(first(y), F.relu(first.branch(y)), rtol=0, atol=0)


# ----------------------------------------------------------------------------- freezing


def _parts(model):
    return {"stem": model.stem, **{s: getattr(model, s) for s in STAGES}}


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3])
def test_freeze_at_freezes_stem_and_first_stages_only(freeze_at):
    model = build_resnet(resnet_cfg(DEPTH=18, NORM="BN", FREEZE_AT=freeze_at))
    frozen_parts = ["stem", "res2", "res3", "res4"][:freeze_at]
    for name, part in _parts(model).items():
        params = list(part.parameters())
        bns = [m for m in part.modules() if isinstance(m, nn.BatchNorm2d)]
        fbns = [m for m in part.modules() if isinstance(m, FrozenBatchNorm2d)]
        if name in frozen_parts:
            assert all(not p.requires_grad for p in params), name
            assert not bns and fbns, name
        else:
            assert params and all(p.requires_grad for p in params), name
            assert bns and not fbns, name


def test_freezing_keeps_the_bn_statistics_so_eval_output_is_unchanged():
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=18, NORM="BN", FREEZE_AT=0))
    randomise_norms(model)
    model.eval()
    x = rand_image()
    with torch.no_grad():
        before = model(x)["res5"]
        frozen = copy.deepcopy(model).freeze(3).eval()
        after = frozen(x)["res5"]
    assert isinstance(frozen.stem.conv1.norm, FrozenBatchNorm2d)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_optimizer_step_leaves_frozen_stages_unchanged_and_updates_later_ones():
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=18, NORM="BN", FREEZE_AT=2), out_features=["res5"]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        opt.zero_grad()
        loss = (model(rand_image(64, 64, b=2))["res5"] ** 2).mean()
        loss.backward()
        opt.step()
    for name, p in model.named_parameters():
        if name.startswith(("stem.", "res2.")):
            assert p.grad is None, name
    after = model.state_dict()
    frozen_keys = [k for k in after if k.startswith(("stem.", "res2."))]
    assert frozen_keys
    for k in frozen_keys:  # weights and FrozenBN buffers (running stats included)
        assert torch.equal(after[k], before[k]), k
    assert not torch.equal(after["res3.0.conv1.weight"], before["res3.0.conv1.weight"])
    assert not torch.equal(after["res5.1.conv2.weight"], before["res5.1.conv2.weight"])
    # BN of trainable stages still updates its running statistics in train mode
    assert not torch.equal(after["res3.0.conv1.norm.running_mean"], before["res3.0.conv1.norm.running_mean"])


# ----------------------------------------------------------------------------- zero-init residual


@pytest.mark.parametrize("norm", ["BN", "GN", "FrozenBN"])
@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_residual_makes_every_block_identity_plus_relu(depth, norm):
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=depth, NORM=norm, ZERO_INIT_RESIDUAL=True)).train()
    records = []
    hooks = [block.register_forward_hook(lambda m, inp, out: records.append((m, inp[0], out)))
             for _, block in model.blocks()]
    with torch.no_grad():
        model(rand_image(64, 64, b=2))
        for h in hooks:
            h.remove()
        assert len(records) == len(list(model.blocks()))
        for block, x, out in records:
            skip = block.shortcut(x) if block.shortcut is not None else x
            torch.testing.assert_close(out, F.relu(skip), rtol=0, atol=0)
            if block.shortcut is None:
                torch.testing.assert_close(out, F.relu(x), rtol=0, atol=0)
            assert block.branch(x).abs().max() == 0
    # the non-last norms are not zeroed
    assert model.res2[0].conv1.norm.weight.abs().min() > 0


def test_zero_init_residual_builds_with_syncbn_and_zeroes_the_last_norm():
    # SyncBN only constructs on CPU (it needs a process group to run), so check the parameters directly
    model = build_resnet(resnet_cfg(STAGE_BLOCKS=[1, 1, 1, 1], BLOCK="bottleneck", NORM="SyncBN",
                                    ZERO_INIT_RESIDUAL=True))
    for _, block in model.blocks():
        assert torch.equal(block.conv3.norm.weight, torch.zeros_like(block.conv3.norm.weight))
        assert torch.equal(block.conv1.norm.weight, torch.ones_like(block.conv1.norm.weight))


def test_without_zero_init_blocks_are_not_identity():
    torch.manual_seed(0)
    model = build_resnet(resnet_cfg(DEPTH=18, NORM="GN")).eval()
    x = torch.rand(1, 64, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(model.res2[1](x), F.relu(x), atol=1e-3)


# ----------------------------------------------------------------------------- custom stage blocks


def test_custom_stage_blocks_basic_and_bottleneck():
    with torch.device("meta"):
        basic = build_resnet(resnet_cfg(DEPTH=101, STAGE_BLOCKS=[1, 2, 3, 1], BLOCK="basic"))
        bott = build_resnet(resnet_cfg(DEPTH=18, STAGE_BLOCKS=[2, 1, 1, 3], BLOCK="bottleneck"))
    assert [len(getattr(basic, s)) for s in STAGES] == [1, 2, 3, 1]
    assert not any(isinstance(b, BottleneckBlock) for _, b in basic.blocks())
    assert basic.out_channels == 512
    assert [len(getattr(bott, s)) for s in STAGES] == [2, 1, 1, 3]
    assert all(isinstance(b, BottleneckBlock) for _, b in bott.blocks())
    assert bott.out_channels == 2048
    torch.manual_seed(0)
    real = build_resnet(resnet_cfg(STAGE_BLOCKS=[1, 1, 1, 1], BLOCK="bottleneck", NORM="GN"))
    assert real(rand_image())["res5"].shape == (1, 2048, 2, 2)


@pytest.mark.parametrize("blocks,block", [([2, 2, 2], "basic"), ([2, 0, 2, 2], "basic"), ([2, 2, 2, 2], "")])
def test_invalid_custom_stage_blocks_raise(blocks, block):
    with pytest.raises(ValueError, match="STAGE_BLOCKS|BLOCK"):
        build_resnet(resnet_cfg(STAGE_BLOCKS=blocks, BLOCK=block))


def test_unknown_depth_raises():
    with pytest.raises(ValueError, match="DEPTH"):
        build_resnet(resnet_cfg(DEPTH=42))
