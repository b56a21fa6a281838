#!/usr/bin/env python
"""Residual-network and dataset analysis: each subcommand prints a table and writes <name>.json and <name>.png.

    # layer table (layer, output shape, params, mult-adds) of the ResNet classifier or the detector
    python tools/analyze.py summary --config configs/coco_r101.yaml --part detector --input-size 800 1333
    python tools/analyze.py summary --part backbone --depth stage MODEL.RESNETS.DEPTH 50

    # delete residual blocks at test time (Veit et al.), residual vs plain network of the same depth
    python tools/analyze.py lesion --config configs/degradation_residual.yaml \\
        --weights output/degradation/degradation_residual/model_final.pth \\
        --plain-config configs/degradation_plain.yaml \\
        --plain-weights output/degradation/degradation_plain/model_final.pth

    # std of each residual branch's output (the ResNet paper's figure 7)
    python tools/analyze.py responses --config C --weights W [--plain-config PC --plain-weights PW]

    # path lengths, gradient per path length, effective paths (Veit et al. figure 6)
    python tools/analyze.py paths --config C --weights W

    # the degradation experiment: train plain and residual nets of the same depth, plot their losses
    python tools/analyze.py degradation --output output/degradation

    # a dataset: classes, box sizes after the test resize, anchor coverage, suggested anchors
    python tools/analyze.py dataset --config configs/custom_coco.yaml [--dataset NAME]   # default DATASETS.TRAIN[0]

Trailing KEY VALUE pairs override the config (applied to --plain-config too). Outputs go to
--output (default: OUTPUT_DIR/analysis). Without --plain-config, --plain-weights uses --config
with MODEL.RESNETS.RESIDUAL False.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

import torch

from detection.analysis import common, lesion, paths, plots, responses, summary
from detection.analysis.dataset import dataset_report
from detection.config import load_config
from detection.data import get_dataset
from detection.engine.events import read_metrics
from detection.engine.launch import HelpFormatter, add_config_argument, add_overrides_argument, run_tool
from detection.modeling.backbone.resnet import resnet_spec
from detection.utils.io import write_json

TRAIN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")

logger = logging.getLogger("detection.analysis")


def _write_json(path: str, data) -> str:
    return write_json(path, data, indent=1, default=lambda o: o if isinstance(o, (int, float, str)) else str(o))


def _out_dir(args, cfg) -> str:
    out = args.output or os.path.join(cfg.OUTPUT_DIR, "analysis")
    os.makedirs(out, exist_ok=True)
    return out


def _configs(args) -> dict:
    """{label: (cfg, weights, config path)}: the main network, and the plain one if asked for."""
    cfg = load_config(args.config or None, args.opts)
    label = "residual" if cfg.MODEL.RESNETS.RESIDUAL else "plain"
    nets = {label: (cfg, getattr(args, "weights", None), args.config)}
    plain_cfg_path, plain_w = getattr(args, "plain_config", None), getattr(args, "plain_weights", None)
    if plain_cfg_path or plain_w:
        if plain_cfg_path:
            pcfg = load_config(plain_cfg_path, args.opts)
        else:
            pcfg = load_config(args.config or None, list(args.opts) + ["MODEL.RESNETS.RESIDUAL", "False"])
        plabel = "plain" if not pcfg.MODEL.RESNETS.RESIDUAL else "residual"
        if plabel in nets:
            plabel += " (2)"
        nets[plabel] = (pcfg, plain_w, plain_cfg_path or f"{args.config} + MODEL.RESNETS.RESIDUAL False")
    return nets


def _load(cfg, weights):
    return common.load_model(cfg, weights if weights else None)


def cmd_summary(args) -> dict:
    cfg = load_config(args.config or None, args.opts)
    res = summary.summarize_cfg(cfg, args.part, args.input_size, args.depth, args.num_rois, args.num_classes,
                                device="cpu" if args.real else "meta")
    print(summary.format_summary(res))
    out = _out_dir(args, cfg)
    print(f"wrote {_write_json(os.path.join(out, 'summary.json'), res)}")
    print(f"wrote {plots.plot_summary(res, os.path.join(out, 'summary.png'))}")
    return res


def cmd_lesion(args) -> dict:
    nets = _configs(args)
    results = {}
    for label, (cfg, weights, path) in nets.items():
        print(f"== {label}: {path}, weights {weights or cfg.MODEL.WEIGHTS or '(random init)'}")
        model = _load(cfg, weights)
        evaluator = common.DetectorAP50(cfg, args.num_images)
        print(f"evaluating mAP@0.5 on {evaluator.num_images} images of {cfg.DATASETS.TEST[0]}")
        results[label] = lesion.lesion_study(model, evaluator, max_k=args.max_k, draws=args.draws, seed=args.seed,
                                             include_reshaping=args.include_reshaping, log=print)
        results[label]["num_images"] = evaluator.num_images
        results[label]["weights"] = weights or cfg.MODEL.WEIGHTS
    for label, res in results.items():
        print(f"\n{label}: intact mAP@0.5 = {res['baseline']:.2f}; one block deleted:")
        print(common.format_table(*lesion.single_lesion_table(res), align="lllrr"))
    print("\nk random blocks deleted (pool: blocks whose deletion is the identity"
          + (", plus reshaping blocks" if args.include_reshaping else "") + "):")
    print(common.format_table(*lesion.random_lesion_table(results)))
    out = _out_dir(args, next(iter(nets.values()))[0])
    print(f"wrote {_write_json(os.path.join(out, 'lesion.json'), results)}")
    print(f"wrote {plots.plot_lesion(results, os.path.join(out, 'lesion.png'))}")
    return results


def cmd_responses(args) -> dict:
    nets = _configs(args)
    results = {}
    for label, (cfg, weights, _) in nets.items():
        model = _load(cfg, weights)
        batches, _, _ = common.test_batches(cfg, args.num_images)
        results[label] = responses.branch_responses(model, batches, all_layers=args.all_layers)
    print(common.format_table(*responses.responses_table(results)))
    for label, rows in results.items():
        stds = [r["std"] for r in rows]
        print(f"{label}: mean std {sum(stds) / len(stds):.4f}, max {max(stds):.4f}, min {min(stds):.4f}")
    out = _out_dir(args, next(iter(nets.values()))[0])
    print(f"wrote {_write_json(os.path.join(out, 'responses.json'), results)}")
    print(f"wrote {plots.plot_responses(results, os.path.join(out, 'responses.png'))}")
    return results


def cmd_paths(args) -> dict:
    cfg = load_config(args.config or None, args.opts)
    model = _load(cfg, args.weights)
    batches, _, _ = common.test_batches(cfg, args.num_images)
    batch = [d for b in batches for d in b]
    res = paths.path_analysis(model, batch, max_k=args.max_k, draws=args.draws, seed=args.seed)
    rows = []
    share = {s["k"]: s["share"] for s in res["effective"]["share"]}
    for d in res["distribution"]:
        g = next((g for g in res["gradients"] if g["k"] == d["k"]), None)
        rows.append([d["k"], f"{d['count']:,}", f"{d['prob']:.4f}",
                     "" if g is None else f"{g['mean']:.4g} +- {g['std']:.2g} ({g['draws']})",
                     "" if g is None else f"{share[d['k']]:.4f}"])
    print(f"{res['n']} residual blocks, input of the chain {res['input_shape']}")
    print(common.format_table(["path length k", "paths", "P(k)", "|grad| per path (draws)", "share of gradient"],
                              rows))
    eff = res["effective"]
    print(f"effective paths: {eff['interval_mass'] * 100:.0f}% of the gradient comes from paths of length "
          f"{eff['interval'][0]}..{eff['interval'][1]} (mode {eff['mode']}, mean {eff['mean_length']:.1f}); "
          f"typical path length {res['n'] / 2:.1f}")
    out = _out_dir(args, cfg)
    print(f"wrote {_write_json(os.path.join(out, 'paths.json'), res)}")
    print(f"wrote {plots.plot_paths(res, os.path.join(out, 'paths.png'))}")
    return res


DEGRADATION_CONFIGS = ["configs/degradation_plain.yaml", "configs/degradation_residual.yaml"]


def cmd_degradation(args) -> dict:
    out = args.output or os.path.join("output", "degradation")
    os.makedirs(out, exist_ok=True)
    runs = {}
    for path in args.configs:
        cfg = load_config(path, args.opts)
        label = f"{'residual' if cfg.MODEL.RESNETS.RESIDUAL else 'plain'}-{_depth_label(cfg)}"
        run_dir = os.path.join(out, os.path.splitext(os.path.basename(path))[0])
        metrics = os.path.join(run_dir, "metrics.jsonl")
        if not args.plot_only:
            cmd = [sys.executable, TRAIN_NET, "--config", path,
                   *(["--resume"] if args.resume else []), *args.opts, "OUTPUT_DIR", run_dir]
            print("$ " + " ".join(cmd), flush=True)
            env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
            subprocess.run(cmd, check=True, env=env)
        if not os.path.isfile(metrics):
            raise SystemExit(f"no {metrics}: train first (without --plot-only)")
        runs[label] = metrics
    result = {}
    for label, mpath in runs.items():
        curves = plots.loss_curves(mpath)
        its, vals = curves["total_loss"]
        tail = vals[-max(1, len(vals) // 10):]
        evals = [r for r in read_metrics(mpath) if "AP50" in r]
        result[label] = {"metrics": mpath, "iterations": its[-1] if its else 0,
                         "final_total_loss": sum(tail) / len(tail) if tail else float("nan"),
                         "final_losses": {k: sum(v[-len(tail):]) / len(tail) for k, (_, v) in curves.items()},
                         "AP50": evals[-1]["AP50"] if evals else None}
    rows = [[lab, r["iterations"], f"{r['final_total_loss']:.4f}",
             "  ".join(f"{k}={v:.3f}" for k, v in r["final_losses"].items() if k != "total_loss"),
             "" if r["AP50"] is None else f"{r['AP50']:.2f}"] for lab, r in result.items()]
    print(common.format_table(["run", "iters", "final loss (last 10% of logs)", "terms", "AP50"], rows))
    print(f"wrote {_write_json(os.path.join(out, 'degradation.json'), result)}")
    print(f"wrote {plots.plot_degradation(runs, os.path.join(out, 'degradation.png'))}")
    return result


def cmd_dataset(args) -> dict:
    cfg = load_config(args.config or None, args.opts)
    name = args.dataset or cfg.DATASETS.TRAIN[0]
    records, info = get_dataset(name, cfg, is_train=False)
    res = dataset_report(records, info.class_names, cfg, name)
    print(f"{name}: {res['num_images']} images ({res['images_without_boxes']} without boxes), {res['num_boxes']} "
          f"boxes, {res['num_ignored']} ignore boxes, {len(res['classes'])} classes")
    print(common.format_table(["class", "images", "boxes", "ignored"],
                              [[c["name"], c["images"], c["boxes"], c["ignored"]] for c in res["classes"]]))
    q = res["quantiles"]
    if len(q) > 1:
        print(f"\nbox sizes in input pixels after the test resize (INPUT.MIN_SIZE_TEST {cfg.INPUT.MIN_SIZE_TEST}, "
              f"MAX_SIZE_TEST {cfg.INPUT.MAX_SIZE_TEST}); quantiles {q['q']}:")
        print(common.format_table(["", *[f"q{v:g}" for v in q["q"]]],
                                  [[k, *[f"{v:.3g}" for v in q[k]]] for k in q if k != "q"]))
    lo, hi = res["iou_thresholds"]
    print("\nanchor coverage (anchors on each image's feature grid): share of boxes whose best anchor IoU is")
    rows = [[k, str(a["sizes"]), str(a["ratios"]), f"{100 * a['coverage']['positive']:.1f}%",
             f"{100 * a['coverage']['between']:.1f}%", f"{100 * a['coverage']['below']:.1f}%",
             f"{a['coverage']['median_best_iou']:.3f}"] for k, a in res["anchors"].items()]
    print(common.format_table(["anchors", "sizes", "ratios (h/w)", f">= {hi}", f"[{lo}, {hi})", f"< {lo}",
                               "median IoU"], rows, align="lllrrrr"))
    if res["config_lines"]:
        print("\nsuggested (quantiles of sqrt(area) and h/w, as many as configured):\n  "
              + "\n  ".join(res["config_lines"]))
    out = _out_dir(args, cfg)
    print(f"wrote {_write_json(os.path.join(out, 'dataset.json'), res)}")
    print(f"wrote {plots.plot_dataset(res, os.path.join(out, 'dataset.png'))}")
    return res


def _depth_label(cfg) -> str:
    r = cfg.MODEL.RESNETS
    kind, counts = resnet_spec(r.DEPTH, r.STAGE_BLOCKS, r.BLOCK)
    layers = sum(counts) * (3 if kind == "bottleneck" else 2) + 2
    return f"{layers}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help, description):
        return sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)

    def common_args(s, weights=True, plain=False, images=8):
        add_config_argument(s)
        s.add_argument("--output", default="", metavar="DIR", help="where the json and png go "
                                                                   "(default: OUTPUT_DIR/analysis)")
        s.add_argument("--threads", type=int, default=0, metavar="N",
                       help="torch intra-op threads (default: 0, torch's own)")
        if weights:
            s.add_argument("--weights", default=None, metavar="FILE", help="trained weights (default: MODEL.WEIGHTS)")
            s.add_argument("--num-images", type=int, default=images, metavar="N",
                           help="test images of DATASETS.TEST[0] used, 0 = all")
        if plain:
            s.add_argument("--plain-config", default=None, metavar="FILE",
                           help="config of the plain network to contrast (default: --config with "
                                "MODEL.RESNETS.RESIDUAL False, when --plain-weights is given)")
            s.add_argument("--plain-weights", default=None, metavar="FILE",
                           help="weights of the plain network (default: no plain network)")

    s = add("summary", "layer table: output shapes, params, mult-adds",
            "The layer table (layer, output shape, params, mult-adds) of the ResNet or the detector.")
    common_args(s, weights=False)
    s.add_argument("--part", choices=("backbone", "trunk", "detector"), default="backbone",
                   help="backbone: the ResNet classifier; trunk: without classifier; detector: the FasterRCNN")
    s.add_argument("--depth", choices=summary.DEPTHS, default="block", help="rows down to this level")
    s.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="default: 224 224 (backbone, trunk), INPUT.MIN_SIZE_TEST square (detector)")
    s.add_argument("--num-rois", type=int, default=None, metavar="N",
                   help="RoIs through res5 (default: MODEL.RPN.POST_NMS_TOPK_TEST)")
    s.add_argument("--num-classes", type=int, default=1000, metavar="K", help="classifier classes for --part backbone")
    s.add_argument("--real", action="store_true", help="run on the CPU instead of the shape-only meta device")
    add_overrides_argument(s, "MODEL.RESNETS.DEPTH 50 MODEL.RESNETS.STRIDE_IN_1X1 False")

    s = add("lesion", "delete residual blocks, evaluate mAP@0.5",
            "Delete residual blocks at test time (Veit et al.) and evaluate mAP@0.5 on the first test images.")
    common_args(s, plain=True, images=50)
    s.add_argument("--draws", type=int, default=5, metavar="N", help="random subsets per k")
    s.add_argument("--max-k", type=int, default=None, metavar="K",
                   help="largest number of deleted blocks (default: all)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random subsets")
    s.add_argument("--include-reshaping", action="store_true",
                   help="let the random deletions also pick projection / reshaping blocks")
    add_overrides_argument(s, "DATASETS.TEST \"['synthetic_val']\" INPUT.MIN_SIZE_TEST 320")

    s = add("responses", "std of the residual branch outputs (ResNet paper fig. 7)",
            "The std of each residual branch's output on test images (the ResNet paper's figure 7).")
    common_args(s, plain=True, images=20)
    s.add_argument("--all-layers", action="store_true", help="every norm of the branches, not only the last")
    add_overrides_argument(s, "DATASETS.TEST \"['synthetic_val']\" INPUT.MIN_SIZE_TEST 320")

    s = add("paths", "path lengths and gradient per path length (Veit et al. fig. 6)",
            "Path lengths, gradient per path length and the effective paths (Veit et al. figure 6).")
    common_args(s, images=2)
    s.add_argument("--draws", type=int, default=10, metavar="N", help="random block subsets per path length")
    s.add_argument("--max-k", type=int, default=None, metavar="K",
                   help="longest path length measured (default: all)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random subsets")
    add_overrides_argument(s, "DATASETS.TEST \"['synthetic_val']\" MODEL.DEVICE cpu")

    s = add("degradation", "train plain and residual nets, plot their training losses",
            "Train a plain and a residual net of the same depth (tools/train_net.py, the KEY VALUE pairs "
            "given to every run), plot their losses.")
    s.add_argument("--configs", nargs="+", default=DEGRADATION_CONFIGS, metavar="FILE", help="one run per config")
    s.add_argument("--output", default="", metavar="DIR",
                   help="runs go to DIR/<config name>/ (default: output/degradation)")
    s.add_argument("--resume", action="store_true", help="continue runs that have a checkpoint")
    s.add_argument("--plot-only", action="store_true", help="do not train; plot the existing metrics")
    s.add_argument("--threads", type=int, default=0, metavar="N",
                   help="OMP_NUM_THREADS of the training runs (default: 0, unset)")
    add_overrides_argument(s, "SOLVER.MAX_ITER 2000 SOLVER.STEPS [1500]")

    s = add("dataset", "class counts, box sizes after the test resize, anchor coverage",
            "Per-class image and box counts, box sizes in input pixels after the test resize, the share "
            "of boxes each anchor IoU band covers, and anchor sizes / ratios that fit the data better.")
    common_args(s, weights=False)
    s.add_argument("--dataset", default="", metavar="NAME", help="dataset name (default: DATASETS.TRAIN[0])")
    add_overrides_argument(s, "INPUT.MIN_SIZE_TEST 600 MODEL.ANCHOR_GENERATOR.SIZES [32,64,128]")
    return p


COMMANDS = {"summary": cmd_summary, "lesion": cmd_lesion, "responses": cmd_responses, "paths": cmd_paths,
            "degradation": cmd_degradation, "dataset": cmd_dataset}


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "num_images", None) == 0:
        args.num_images = None
    if args.threads:
        torch.set_num_threads(args.threads)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s: %(message)s")
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    run_tool(main)
