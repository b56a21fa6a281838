"""Analysis tools: lesions remove exactly one branch, an empty lesion reproduces the model's mAP,
path-length distribution and path gradients (k = 0 is the skip-only path; all paths sum to the
ordinary gradient), responses, the layer table's totals and multiply-adds, and the CLI."""
import json
import math
from fractions import Fraction
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

from norms import randomise_norms
from tool_scripts import load_tool

from detection.analysis import (DetectorAP50, PathForward, backbone_summary, block_kind, branch_responses,
                                conv_macs, deletion_pool, detector_summary, lesion_study, lesioned, paper_name,
                                path_gradients, path_length_distribution, residual_blocks, summarize_cfg)
from detection.analysis.paths import block_chain, chain_input, effective_paths, random_projection
from detection.config import get_default_config, load_config
from detection.modeling import build_model
from detection.modeling import build_resnet
from detection.modeling.backbone.resnet import make_stage



pytestmark = pytest.mark.usefixtures("single_thread")


def resnet_cfg(**resnets):
    cfg = get_default_config()
    r = cfg.MODEL.RESNETS
    r.DEPTH, r.NORM, r.STRIDE_IN_1X1, r.FREEZE_AT, r.STEM_OUT_CHANNELS = 18, "BN", False, 0, 8
    for k, v in resnets.items():
        setattr(r, k, v)
    return cfg




def small_resnet(seed=0, **resnets):
    torch.manual_seed(seed)
    return randomise_norms(build_resnet(resnet_cfg(**resnets), num_stages=4), seed).eval()


def image(b=2, size=32, seed=0):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ lesion
def _trace(model, x):
    """Every block's (input, output) in one forward."""
    seen = {}
    handles = [b.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0].clone(), o.clone())))
               for n, b in residual_blocks(model)]
    out = model(x)["res5"]
    for h in handles:
        h.remove()
    return out, seen


@pytest.mark.parametrize("target", ["res2.1", "res3.0", "res5.1"])
def test_lesion_removes_exactly_that_branch(target):
    model = small_resnet()
    x = image()
    names = [n for n, _ in residual_blocks(model)]
    block = dict(residual_blocks(model))[target]
    with torch.no_grad():
        intact, t_intact = _trace(model, x)
        with lesioned(model, [target]) as kinds:
            out, t_les = _trace(model, x)
        again, _ = _trace(model, x)
        # reference: the model's own forward with only that branch's output replaced by zeros
        s = block.shortcut
        block.branch = lambda z: torch.zeros_like(z if s is None else s(z))
        ref, _ = _trace(model, x)
        del block.branch
    assert kinds == {target: "identity" if target != "res3.0" else "projection"}
    assert torch.equal(out, ref)
    assert not torch.equal(out, intact)
    assert torch.equal(again, intact) and "forward" not in block.__dict__  # restored
    i = names.index(target)
    for n in names[: i + 1]:  # everything up to the lesioned block's input is untouched
        assert torch.equal(t_les[n][0], t_intact[n][0])
    for n in names[:i]:
        assert torch.equal(t_les[n][1], t_intact[n][1])
    x_in, y = t_les[target]
    expected = F.relu(x_in if s is None else s(x_in))
    assert torch.equal(y, expected)
    if s is None:  # identity shortcut: relu(x) = x because block inputs are non-negative
        assert x_in.min() >= 0 and torch.equal(y, x_in)
    for n in names[i + 1:]:  # later blocks compute normally on the changed input
        bi, bo = t_les[n]
        assert torch.allclose(dict(residual_blocks(model))[n](bi), bo)


def test_lesion_gradients_skip_the_deleted_branch():
    model = small_resnet().train()
    with lesioned(model, ["res4.1"]):
        model(image())["res5"].square().sum().backward()
    blocks = dict(residual_blocks(model))
    assert all(p.grad is None for p in blocks["res4.1"].conv1.parameters())
    assert all(p.grad is not None for n, b in blocks.items() if n != "res4.1" for p in b.conv1.parameters())


def test_lesion_plain_network_and_pool():
    plain = small_resnet(RESIDUAL=False, SHORTCUT="A")
    res = small_resnet(RESIDUAL=True, SHORTCUT="A")
    kinds = {n: block_kind(b) for n, b in residual_blocks(plain)}
    assert kinds["res2.0"] == "plain" and kinds["res3.0"] == "plain-reshape"
    assert {n: block_kind(b) for n, b in residual_blocks(res)}["res3.0"] == "zeropad"
    # the random-deletion pool holds the same positions in both networks
    assert deletion_pool(plain) == deletion_pool(res) == ["res2.0", "res2.1", "res3.1", "res4.1", "res5.1"]
    assert len(deletion_pool(res, include_reshaping=True)) == 8
    x = image()
    with torch.no_grad():
        _, t = _trace(plain, x)
        with lesioned(plain, ["res2.1", "res3.0"]):
            _, tl = _trace(plain, x)
    assert torch.equal(tl["res2.1"][1], tl["res2.1"][0])  # plain shape-keeping block -> identity
    xi, y = tl["res3.0"]  # reshaping block -> subsample + zero channels
    assert y.shape == t["res3.0"][1].shape
    assert torch.equal(y[:, : xi.shape[1]], xi[:, :, ::2, ::2]) and not y[:, xi.shape[1]:].any()
    with pytest.raises(KeyError):
        with lesioned(plain, ["res9.0"]):
            pass


def test_lesion_study_structure():
    model = small_resnet()
    x = image(1)
    calls = []

    def evaluate(m):
        with torch.no_grad():
            v = float(m(x)["res5"].mean())
        calls.append(v)
        return v

    res = lesion_study(model, evaluate, draws=3, seed=1, log=lambda s: None)
    pool = res["pool"]
    assert res["random"][0] == {"k": 0, "draws": 1, "metrics": [res["baseline"]], "removed": [[]],
                                "mean": res["baseline"], "std": 0.0, "min": res["baseline"], "max": res["baseline"]}
    assert [r["k"] for r in res["random"]] == list(range(len(pool) + 1))
    for r in res["random"][1:]:
        assert r["draws"] == min(3, math.comb(len(pool), r["k"]))
        assert len({tuple(s) for s in r["removed"]}) == r["draws"]
        assert all(len(s) == r["k"] and set(s) <= set(pool) for s in r["removed"])
    assert len(res["single"]) == 8 and [s["name"] for s in res["single"]] == [n for n, _ in residual_blocks(model)]
    assert len(calls) == 1 + 8 + sum(r["draws"] for r in res["random"][1:])
    assert res["single"][0]["paper_name"] == "conv2_1"
    again = lesion_study(model, evaluate, draws=3, seed=1, single=False, log=lambda s: None)
    assert [r["removed"] for r in again["random"]] == [r["removed"] for r in res["random"]]  # seeded


# ------------------------------------------------------------------------- detector (needs data)
DET_OPTS = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN", "MODEL.RESNETS.FREEZE_AT", "0",
            "MODEL.RESNETS.STRIDE_IN_1X1", "False", "MODEL.RESNETS.STEM_OUT_CHANNELS", "8",
            "MODEL.PIXEL_MEAN", "[110.0, 110.0, 110.0]", "MODEL.PIXEL_STD", "[60.0, 60.0, 60.0]",
            "MODEL.ANCHOR_GENERATOR.SIZES", "[16, 32, 64]", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200",
            "MODEL.RPN.POST_NMS_TOPK_TEST", "30", "MODEL.ROI_HEADS.NUM_CLASSES", "6",
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "4", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
            "DATASETS.SYNTHETIC.NUM_TRAIN", "2", "DATASETS.SYNTHETIC.NUM_VAL", "4",
            "DATASETS.SYNTHETIC.IMAGE_SIZE", "96", "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "2"]


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("analysis_data"))
    cfg = load_config(None, ["DATASETS.ROOT", root, "OUTPUT_DIR", os.path.join(root, "out"), *DET_OPTS])
    torch.manual_seed(0)
    model = build_model(cfg)
    randomise_norms(model)
    with torch.no_grad():  # confident, varied scores so detections depend on the features
        model.roi_heads.box_predictor.cls_score.weight.normal_(std=0.5)
    return cfg, model.eval(), root


def test_detector_block_names(det):
    _, model, _ = det
    names = [n for n, _ in residual_blocks(model)]
    assert names == ["backbone.res2.0", "backbone.res2.1", "backbone.res3.0", "backbone.res3.1",
                     "backbone.res4.0", "backbone.res4.1", "roi_heads.res5.0", "roi_heads.res5.1"]
    assert paper_name("roi_heads.res5.1") == "conv5_2" and paper_name("backbone.stem") == "conv1"


def test_deleting_nothing_reproduces_map(det, monkeypatch):
    import detection.evaluation.evaluator as ev
    from detection.engine.inference import evaluate

    for name in ("plot_per_class_ap", "plot_pr_curves"):  # the reference run's PNGs: slow, no metric
        monkeypatch.setattr(ev, name, lambda *a, **k: None)
    cfg, model, _ = det
    reference = evaluate(cfg, model)[cfg.DATASETS.TEST[0]]["AP50"]
    evaluator = DetectorAP50(cfg)
    assert evaluator.num_images == 4
    batch = evaluator.batches[0]
    with torch.no_grad():
        intact = model(batch)
        with lesioned(model, []):
            same = model(batch)
        with lesioned(model, ["backbone.res3.1"]):
            changed = model(batch)
    for a, b in zip(intact, same):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a["scores"].shape != c["scores"].shape or not torch.equal(a["scores"], c["scores"])
               for a, c in zip(intact, changed))
    res = lesion_study(model, evaluator, max_k=1, draws=1, single=False, log=lambda s: None)
    assert res["baseline"] == pytest.approx(reference, abs=1e-9)
    with lesioned(model, []):
        assert evaluator(model) == pytest.approx(reference, abs=1e-9)


def test_responses_match_branch_outputs(det):
    cfg, model, _ = det
    batches = DetectorAP50(cfg, 2).batches
    rows = branch_responses(model, batches)
    assert [r["name"] for r in rows] == [n for n, _ in residual_blocks(model)]
    # recompute the first block's branch output by hand
    from detection.analysis import trunk_input

    block = model.backbone.res2[0]
    outs = []
    with torch.no_grad():
        for b in batches:
            for d in b:  # padded sizes may differ: the detector groups images by padded size
                outs.append(block.branch(model.backbone.stem(trunk_input(model, [d]))))
    flat = torch.cat([o.transpose(0, 1).reshape(o.shape[1], -1) for o in outs], 1).double()
    assert rows[0]["std"] == pytest.approx(float(flat.std(1, unbiased=False).mean()), rel=1e-5)
    assert rows[0]["std_all"] == pytest.approx(float(flat.std(unbiased=False)), rel=1e-5)
    assert rows[-1]["count"] > 0  # res5 ran on the RoIs
    assert len(branch_responses(model, batches[:1], all_layers=True)) == 16


# ------------------------------------------------------------------------------------------- paths
def test_path_length_distribution_is_binomial():
    for n in (1, 5, 16, 54):
        dist = path_length_distribution(n)
        assert sum(d["prob"] for d in dist) == pytest.approx(1.0)
        assert sum(d["count"] for d in dist) == 2 ** n
        row = [Fraction(1)]  # Pascal's triangle of a fair coin: P_n(k) = (P_{n-1}(k-1) + P_{n-1}(k)) / 2
        for _ in range(n):
            row = [(a + b) / 2 for a, b in zip([Fraction(0)] + row, row + [Fraction(0)])]
        assert [d["k"] for d in dist] == list(range(n + 1))
        assert [d["prob"] for d in dist] == pytest.approx([float(p) for p in row], rel=1e-12)
        binom = torch.distributions.Binomial(n, torch.tensor(0.5, dtype=torch.float64))
        assert binom.mean == pytest.approx(sum(d["k"] * d["prob"] for d in dist))
    d54 = path_length_distribution(54)  # Veit et al.: more than 95% of paths have 19..35 modules
    assert sum(d["prob"] for d in d54 if 19 <= d["k"] <= 35) > 0.95


def identity_chain(n=3, c=8, seed=0):
    torch.manual_seed(seed)
    stage = make_stage("basic", n, c, c, c, 1, norm="BN", gn_groups=1, shortcut="B", residual=True)
    return randomise_norms(stage, seed).eval()


def test_k0_gradient_is_the_skip_only_path():
    blocks = identity_chain()
    x = F.relu(image(2, 12, 1)[:, :1].expand(2, 8, 12, 12) + torch.randn(2, 8, 12, 12))
    fwd = PathForward(list(blocks), x)
    proj = random_projection(fwd.output.shape, 3)
    # skip-only path for identity shortcuts: the gradient only passes the ReLU masks of the sums
    masks, h = [], x
    with torch.no_grad():
        for b in blocks:
            z = b.branch(h) + h
            masks.append(z > 0)
            h = F.relu(z)
    expected = proj.clone()
    for m in reversed(masks):
        expected = expected * m
    assert torch.allclose(fwd.backward(proj, []), expected)
    assert torch.allclose(fwd.output, blocks(x))  # the forward is the normal one


def test_k0_gradient_with_projection_shortcuts():
    model = small_resnet()
    _, chain = block_chain(model)
    x0 = chain_input(model, image(1, 32))
    fwd = PathForward([b for _, b in chain], x0)
    proj = random_projection(fwd.output.shape, 1)
    # independent: autograd through the normal forward with every branch output a constant
    xr = x0.clone().requires_grad_(True)
    h = xr
    for _, b in chain:
        z = b.branch(h).detach() + (h if b.shortcut is None else b.shortcut(h))
        h = F.relu(z)
    (g,) = torch.autograd.grad((h * proj).sum(), xr)
    assert torch.allclose(fwd.backward(proj, []), g, atol=1e-6)


def test_all_paths_sum_to_the_ordinary_gradient():
    import itertools

    model = small_resnet(STAGE_BLOCKS=[2, 1, 1, 1], BLOCK="basic")
    _, chain = block_chain(model)
    n = len(chain)
    x0 = chain_input(model, image(1, 32))
    fwd = PathForward([b for _, b in chain], x0)
    proj = random_projection(fwd.output.shape, 2)
    total = sum(fwd.backward(proj, s) for k in range(n + 1) for s in itertools.combinations(range(n), k))
    xr = x0.clone().requires_grad_(True)
    h = xr
    for _, b in chain:
        h = b(h)
    (g,) = torch.autograd.grad((h * proj).sum(), xr)
    assert torch.allclose(total, g, atol=1e-5, rtol=1e-4)
    assert torch.allclose(fwd.full_backward(proj), g, atol=1e-5, rtol=1e-4)


def test_path_gradients_and_effective_paths():
    model = small_resnet()
    _, chain = block_chain(model)
    grads = path_gradients([b for _, b in chain], chain_input(model, image(1, 32)), draws=4)
    assert [g["k"] for g in grads] == list(range(9))
    assert grads[0]["draws"] == 1 and grads[8]["draws"] == 1 and grads[4]["draws"] == 4
    assert all(g["mean"] > 0 for g in grads)
    eff = effective_paths(path_length_distribution(8), grads)
    assert sum(s["share"] for s in eff["share"]) == pytest.approx(1.0)
    assert eff["interval_mass"] >= 0.9 and eff["interval"][0] <= eff["mode"] <= eff["interval"][1]
    with pytest.raises(ValueError):
        PathForward([b for _, b in residual_blocks(small_resnet(RESIDUAL=False))], torch.zeros(1, 8, 8, 8))


# ----------------------------------------------------------------------------------------- summary
def test_conv_macs_hand_computed():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2)
    out = conv(torch.zeros(1, 6, 16, 16))
    assert conv_macs(conv, out) == 8 * 8 * 8 * (6 // 2) * 3 * 3  # out elements x in/groups x kh x kw
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    s = backbone_summary(model, (16, 16), depth="leaf", in_channels=6)
    assert s["totals"]["macs"] == 8 * 8 * 8 * 3 * 9 + 512 * 10
    assert s["totals"]["params"] == s["totals"]["params_counted"] == sum(p.numel() for p in model.parameters())


def test_resnet50_summary_matches_torchvision():
    import torchvision

    cfg = resnet_cfg(DEPTH=50, STEM_OUT_CHANNELS=64)
    s = summarize_cfg(cfg, "backbone", depth="leaf")  # shapes only (meta device)
    t = s["totals"]
    assert t["params"] == t["params_counted"] == 25_557_032
    assert t["macs"] == pytest.approx(4.09e9, rel=0.005)  # torchvision: 4.09 "GFLOPS" (multiply-adds)
    with torch.device("meta"):
        tv = torchvision.models.resnet50()
    assert sum(p.numel() for p in tv.parameters()) == 25_557_032
    # frozen norms keep scale/shift as buffers; they still count (trainable does not)
    frozen = summarize_cfg(resnet_cfg(DEPTH=50, STEM_OUT_CHANNELS=64, NORM="FrozenBN", FREEZE_AT=2), "backbone",
                           depth="stage")
    assert frozen["totals"]["params"] == frozen["totals"]["params_counted"] == 25_557_032
    with torch.device("meta"):
        m = build_resnet(resnet_cfg(DEPTH=50, STEM_OUT_CHANNELS=64, NORM="FrozenBN", FREEZE_AT=2), num_classes=1000)
    assert frozen["totals"]["trainable_params"] == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert frozen["totals"]["params"] == sum(p.numel() for p in m.parameters()) + sum(
        x.weight.numel() + x.bias.numel() for x in m.modules() if isinstance(x, FrozenBatchNorm2d))
    rows = {r["name"]: r for r in s["rows"]}
    assert rows["res3.0"]["output_shape"] == [1, 512, 28, 28] and rows["res3.0"]["paper_name"] == "conv3_1"
    assert rows["linear"]["macs"] == 2048 * 1000


def test_detector_summary_totals(det):
    cfg, model, _ = det
    for depth in ("stage", "block", "leaf"):
        s = detector_summary(model, (96, 128), num_rois=30, depth=depth)
        t = s["totals"]
        assert t["params"] == t["params_counted"] == sum(p.numel() for p in model.parameters())
        assert t["macs"] == t["macs_per_image"] + 30 * t["macs_per_roi"]
    rows = {r["name"]: r for r in s["rows"]}
    assert rows["roi_heads.res5.0.conv1"]["part"] == "per RoI" and rows["backbone.stem.conv1"]["part"] == "per image"
    assert rows["roi_heads.res5"]["output_shape"] == [30, 64, 2, 2]
    # per-RoI MACs scale with the RoI count, the per-image part does not
    s2 = detector_summary(model, (96, 128), num_rois=60)
    assert s2["totals"]["macs_rois"] == 2 * t["macs_rois"] and s2["totals"]["macs_per_image"] == t["macs_per_image"]


# --------------------------------------------------------------------------------------------- CLI
def test_cli(det, tmp_path, capsys):
    analyze = load_tool("analyze")
    cfg, model, root = det
    weights = str(tmp_path / "w.pth")
    torch.save({"model": model.state_dict()}, weights)
    opts = ["DATASETS.ROOT", root, *DET_OPTS]
    out = str(tmp_path / "out")
    analyze.main(["summary", "--part", "detector", "--depth", "stage", "--output", out, *opts])
    analyze.main(["paths", "--weights", weights, "--output", out, "--draws", "2", "--num-images", "1", *opts])
    analyze.main(["lesion", "--weights", weights, "--output", out, "--num-images", "2", "--draws", "1",
                  "--max-k", "1", *opts])
    analyze.main(["responses", "--weights", weights, "--output", out, "--num-images", "1", *opts])
    text = capsys.readouterr().out
    for name in ("summary", "paths", "lesion", "responses"):
        assert os.path.getsize(os.path.join(out, name + ".png")) > 0
        with open(os.path.join(out, name + ".json")) as f:
            json.load(f)
    assert "conv4_x" in text and "share of gradient" in text and "k random blocks" in text
    with open(os.path.join(out, "lesion.json")) as f:
        les = json.load(f)
    assert set(les) == {"residual"}
    assert les["residual"]["baseline"] == pytest.approx(DetectorAP50(cfg, 2)(model))
    # --plain-weights without --plain-config: the same config with MODEL.RESNETS.RESIDUAL False
    args = analyze.build_parser().parse_args(["lesion", "--weights", "a", "--plain-weights", "b", *opts])
    nets = analyze._configs(args)
    assert list(nets) == ["residual", "plain"] and not nets["plain"][0].MODEL.RESNETS.RESIDUAL
    assert nets["plain"][1] == "b" and nets["plain"][0].DATASETS.ROOT == root
