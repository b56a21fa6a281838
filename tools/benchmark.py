#!/usr/bin/env python
"""Speed and memory of our C4 Faster R-CNN against one assembled from torchvision's generic
detection classes (same ResNet trunk and res5 head, image size and proposal counts).

    python tools/benchmark.py --config configs/coco_r101.yaml --size 600 1000 [--device cuda] [--amp bf16]

Prints the median inference time per image and training time per iteration (after warm-up),
the peak memory of each (GPU: max allocated; CPU: peak resident set of a fresh process), and
the ratio torchvision / ours. Each measurement runs in its own process so peaks don't mix. CPU time
(of the process, all threads) is printed too: on a shared machine it is the steadier figure.
Weights are random: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from detection.config import load_config
from detection.engine.launch import HelpFormatter, add_config_argument, add_overrides_argument, run_tool
from detection.modeling import build_c4_backbone, build_model
from detection.utils.io import write_json


def synthetic_batch(n: int, h: int, w: int, num_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        xy = torch.rand(8, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 32 + torch.rand(8, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, num_classes, (8,), generator=g)
        batch.append({"image": image, "boxes": boxes, "labels": labels, "height": h, "width": w})
    return batch


class TorchvisionC4(nn.Module):
    """torchvision.models.detection.FasterRCNN with our trunk as backbone and res5 as box head,
    adapted to our input/output dicts. The box pooler must be torchvision's MultiScaleRoIAlign."""

    def __init__(self, cfg):
        super().__init__()
        trunk, res5 = build_c4_backbone(cfg)

        class Backbone(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = trunk
                self.out_channels = trunk.out_channels

            def forward(self, x):
                return {"0": self.body(x)["res4"]}

        class Res5Head(nn.Module):
            def __init__(self):
                super().__init__()
                self.res5 = res5

            def forward(self, x):
                return self.res5(x).mean(dim=(2, 3))

        r, h, a = cfg.MODEL.RPN, cfg.MODEL.ROI_HEADS, cfg.MODEL.ANCHOR_GENERATOR
        anchors = AnchorGenerator(sizes=(tuple(a.SIZES),), aspect_ratios=(tuple(a.ASPECT_RATIOS),))
        res_channels = res5[-1].conv3.out_channels if hasattr(res5[-1], "conv3") else res5[-1].conv2.out_channels
        mean = [m / 255.0 for m in cfg.MODEL.PIXEL_MEAN]
        std = [s / 255.0 for s in cfg.MODEL.PIXEL_STD]
        self.model = FasterRCNN(
            Backbone(), num_classes=None, min_size=cfg.INPUT.MIN_SIZE_TEST, max_size=cfg.INPUT.MAX_SIZE_TEST,
            image_mean=mean, image_std=std, rpn_anchor_generator=anchors,
            rpn_pre_nms_top_n_train=r.PRE_NMS_TOPK_TRAIN, rpn_pre_nms_top_n_test=r.PRE_NMS_TOPK_TEST,
            rpn_post_nms_top_n_train=r.POST_NMS_TOPK_TRAIN, rpn_post_nms_top_n_test=r.POST_NMS_TOPK_TEST,
            rpn_nms_thresh=r.NMS_THRESH, rpn_batch_size_per_image=r.BATCH_SIZE_PER_IMAGE,
            box_roi_pool=MultiScaleRoIAlign(["0"], cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION, sampling_ratio=0),
            box_head=Res5Head(), box_predictor=FastRCNNPredictor(res_channels, h.NUM_CLASSES + 1),
            box_score_thresh=h.SCORE_THRESH_TEST, box_nms_thresh=h.NMS_THRESH_TEST,
            box_detections_per_img=h.DETECTIONS_PER_IMAGE, box_batch_size_per_image=h.BATCH_SIZE_PER_IMAGE,
            box_positive_fraction=h.POSITIVE_FRACTION,
        )

    def forward(self, batch):
        images = [x["image"].to(self.model.roi_heads.box_predictor.cls_score.weight.device).float() / 255.0
                  for x in batch]
        if self.training:
            targets = [{"boxes": x["boxes"].to(images[0].device), "labels": x["labels"].to(images[0].device) + 1}
                       for x in batch]
            return self.model(images, targets)
        return self.model(images)


@torch.no_grad()
def calibrate_frozen_bn(model: nn.Module, batch) -> None:
    """Set every FrozenBN's statistics to those of its input on ``batch``, in forward order.

    Random weights without normalisation blow activations up through 100 layers, the RPN then
    collapses to a handful of proposals and the timing means nothing. After this the network
    behaves like a trained one in scale: the RPN keeps its full proposal budget.
    """
    def set_stats(module, args):
        x = args[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    hooks = [m.register_forward_pre_hook(set_stats) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    was_training = model.training
    model.eval()
    model(batch)
    model.train(was_training)
    for h in hooks:
        h.remove()


def count_rois(which: str, model: nn.Module, batch) -> int:
    """How many proposals reach the res5 head at test time."""
    seen = []
    head = model.roi_heads.res5 if which == "ours" else model.model.roi_heads.box_head.res5
    h = head.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    with torch.no_grad():
        model.eval()
        model(batch)
    h.remove()
    return seen[0]


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(which: str, config: str, opts: list, size, mode: str, iters: int, warmup: int, amp: str, queue):
    torch.manual_seed(0)
    cfg = load_config(config, opts)
    device = cfg.MODEL.DEVICE
    h, w = size
    # Our model takes images already resized (by the data loader); torchvision's resizes inside.
    # Giving both an image already at the target size makes torchvision's resize a no-op copy.
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = min(h, w), max(h, w)
    ours = build_model(cfg)
    batch = synthetic_batch(1, h, w, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    calibrate_frozen_bn(ours, batch)
    if which == "ours":
        model = ours
    else:  # the same weights in torchvision's assembly
        model = TorchvisionC4(cfg)
        model.model.backbone.body.load_state_dict(ours.backbone.state_dict())
        model.model.roi_heads.box_head.res5.load_state_dict(ours.roi_heads.res5.state_dict())
        for mine, theirs in ((ours.rpn.head.conv, model.model.rpn.head.conv[0][0]),
                             (ours.rpn.head.objectness_logits, model.model.rpn.head.cls_logits),
                             (ours.rpn.head.anchor_deltas, model.model.rpn.head.bbox_pred)):
            theirs.load_state_dict(mine.state_dict())
        # torchvision: background is class 0 and has box deltas of its own; ours: background last, none.
        mine, theirs = ours.roi_heads.box_predictor, model.model.roi_heads.box_predictor
        with torch.no_grad():
            theirs.cls_score.weight.copy_(torch.cat([mine.cls_score.weight[-1:], mine.cls_score.weight[:-1]]))
            theirs.cls_score.bias.copy_(torch.cat([mine.cls_score.bias[-1:], mine.cls_score.bias[:-1]]))
            theirs.bbox_pred.weight.zero_()
            theirs.bbox_pred.bias.zero_()
            theirs.bbox_pred.weight[4:].copy_(mine.bbox_pred.weight)
            theirs.bbox_pred.bias[4:].copy_(mine.bbox_pred.bias)
    del ours
    model = model.to(device)
    rois = count_rois(which, model, batch)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    autocast = torch.autocast("cuda", dtype=dtype) if dtype and device.startswith("cuda") else None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    if mode == "inference":
        model.eval()
        with torch.no_grad():
            for i in range(warmup + iters):
                _sync(device)
                t, c = time.perf_counter(), time.process_time()
                if autocast:
                    with autocast:
                        model(batch)
                else:
                    model(batch)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t)
                    cpu_times.append(time.process_time() - c)
    else:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda") if amp == "fp16" and device.startswith("cuda") else None
        for i in range(warmup + iters):
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            if autocast:
                with autocast:
                    loss = sum(model(batch).values())
            else:
                loss = sum(model(batch).values())
            opt.zero_grad()
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
                cpu_times.append(time.process_time() - c)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "GPU max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak_kind = "peak RSS"
    queue.put({"median_s": statistics.median(times), "times": times, "median_cpu_s": statistics.median(cpu_times),
               "peak_mib": peak, "peak_kind": peak_kind,
               "test_rois": rois})


def run_isolated(*args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=measure, args=(*args, q))
    p.start()
    while p.is_alive() and q.empty():
        p.join(timeout=1)
    if q.empty():
        raise RuntimeError(f"benchmark process for {args[0]} failed (exit code {p.exitcode})")
    out = q.get()
    p.join()
    return out


@torch.no_grad()
def benchmark_export(config: str, opts: list, size, iters: int, warmup: int, json_path: str = "") -> dict:
    """Median seconds per image of one (3, H, W) image through eager PyTorch (the model's own test
    path), the TorchScript export and the ONNX export in onnxruntime, in this process, on the CPU."""
    import tempfile

    from detection.engine.export import export_model, load_exported, match_detections

    cfg = load_config(config, opts + ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    calibrate_frozen_bn(model, synthetic_batch(1, *size, cfg.MODEL.ROI_HEADS.NUM_CLASSES))
    sample = synthetic_batch(1, *size, cfg.MODEL.ROI_HEADS.NUM_CLASSES, seed=1)[0]
    args = (sample["image"], torch.tensor([sample["height"], sample["width"]]))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = export_model(model, sample, tmp)
        def eager(*_):
            out = model([sample])[0]
            return tuple(out[k].numpy() for k in ("boxes", "scores", "labels"))

        runners = {"eager": eager,
                   **{fmt: load_exported(path, threads=torch.get_num_threads()) for fmt, path in files.items()}}
        ref = runners["eager"](*args)
        for name, run in runners.items():
            times = []
            for i in range(warmup + iters):
                start = time.perf_counter()
                out = run(*args)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
            m = match_detections(ref, out)
            results[name] = {"median_s": statistics.median(times), **m}
            print(f"  {name:12s} median {results[name]['median_s'] * 1000:9.1f} ms   detections {m['got']:4d}, "
                  f"max box difference to eager {m['max_box_diff']:.1e} px", flush=True)
    if json_path:
        write_json(json_path, results)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_config_argument(p, default="configs/coco_r101.yaml")
    p.add_argument("--size", type=int, nargs=2, default=[600, 1000], metavar=("H", "W"),
                   help="image size, the same for both models")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (sets MODEL.DEVICE)")
    p.add_argument("--amp", default="", choices=["", "bf16", "fp16"],
                   help="autocast dtype, CUDA only (default: off, fp32)")
    p.add_argument("--iters", type=int, default=5, metavar="N", help="timed iterations")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed iterations first")
    p.add_argument("--mode", default="both", choices=["both", "inference", "train", "export"],
                   help="what to time; export: ours in eager PyTorch vs TorchScript vs ONNX Runtime, one image")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="torch intra-op threads (default: 0, torch's own)")
    p.add_argument("--json", default="", metavar="FILE", help="also write the results here (default: not written)")
    add_overrides_argument(p, "MODEL.RESNETS.DEPTH 50 MODEL.RPN.POST_NMS_TOPK_TEST 1000 MODEL.CHANNELS_LAST False")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = ["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", *args.opts]
    results = {}
    print(f"config {args.config}, image {args.size[0]}x{args.size[1]}, device {args.device}"
          f"{', amp ' + args.amp if args.amp else ''}, {args.iters} timed iterations after {args.warmup} warm-up")
    if args.mode == "export":
        return benchmark_export(args.config, opts, args.size, args.iters, args.warmup, args.json)
    for mode in (["inference", "train"] if args.mode == "both" else [args.mode]):
        for which in ("ours", "torchvision"):
            r = run_isolated(which, args.config, opts, args.size, mode, args.iters, args.warmup, args.amp)
            results[f"{mode}/{which}"] = r
            print(f"  {mode:9s} {which:12s} median {r['median_s'] * 1000:9.1f} ms  (CPU time "
                  f"{r['median_cpu_s'] * 1000:9.1f} ms)   {r['peak_kind']} "
                  f"{r['peak_mib']:8.0f} MiB   RoIs at test {r['test_rois']}", flush=True)
        ratio = results[f"{mode}/torchvision"]["median_s"] / results[f"{mode}/ours"]["median_s"]
        cpu_ratio = results[f"{mode}/torchvision"]["median_cpu_s"] / results[f"{mode}/ours"]["median_cpu_s"]
        print(f"  {mode:9s} torchvision / ours = {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU time")
        results[f"{mode}/ratio_torchvision_over_ours"] = ratio
    if args.json:
        write_json(args.json, results, indent=1)
    return results


if __name__ == "__main__":
    run_tool(main)
