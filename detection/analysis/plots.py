"""Matplotlib figures of the analysis results (files only; see ``detection.utils.plotting``)."""
from __future__ import annotations

from detection.engine.events import read_metrics
from detection.utils.plotting import new_figure, save_figure

COLORS = {"residual": "tab:blue", "plain": "tab:red"}


def _color(label: str, i: int) -> str:
    for key, c in COLORS.items():
        if key in label.lower():
            return c
    return f"C{i}"


def plot_summary(summary: dict, path: str) -> str:
    """Parameters and multiply-adds of each counted row."""
    rows = [r for r in summary["rows"] if not r["group"] and (r["params"] or r["macs"])]
    names = [r["paper_name"] or r["name"] for r in rows]
    fig = new_figure((max(6, 0.28 * len(rows) + 2), 6))
    axes = fig.subplots(2, 1, sharex=True)
    colors = ["tab:orange" if r.get("part") == "per RoI" else "tab:blue" for r in rows]
    axes[0].bar(range(len(rows)), [r["params"] / 1e6 for r in rows], color=colors)
    axes[0].set_ylabel("params (M)")
    axes[1].bar(range(len(rows)), [r["macs"] / 1e9 for r in rows], color=colors)
    axes[1].set_ylabel("mult-adds (G)")
    axes[1].set_xticks(range(len(rows)))
    axes[1].set_xticklabels(names, rotation=90, fontsize=7)
    t = summary["totals"]
    h, w = t["input_size"]
    title = f"{t['params'] / 1e6:.2f} M params, {t['macs'] / 1e9:.2f} G mult-adds at {h}x{w}"
    if summary["kind"] == "detector":
        title += f" (+ {t['num_rois']} RoIs, orange = per RoI)"
    axes[0].set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_lesion(results: dict[str, dict], path: str, metric: str = "mAP@0.5 (%)") -> str:
    """Left: each block deleted alone (reshaping blocks hatched); middle: metric vs number of
    randomly deleted blocks (mean +- std, every draw as a dot), one line per network; right: the
    same relative to each network's intact metric."""
    fig = new_figure((17, 4.5))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    ax = axes[0]
    labels = list(results)
    width = 0.8 / max(1, len(labels))
    for i, lab in enumerate(labels):
        res = results[lab]
        single = res["single"]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(single))]
        bars = ax.bar(xs, [r["metric"] for r in single], width, color=_color(lab, i), label=lab, alpha=0.8)
        for b, r in zip(bars, single):
            if r["kind"] not in ("identity", "plain"):
                b.set_hatch("//")
                b.set_edgecolor("black")
        ax.axhline(res["baseline"], color=_color(lab, i), linestyle="--", linewidth=1)
    if labels:
        single = results[labels[0]]["single"]
        ax.set_xticks(range(len(single)))
        ax.set_xticklabels([r["paper_name"] for r in single], rotation=90, fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title("one block deleted (dashed: intact; hatched: projection / reshaping block)", fontsize=9)
    ax.legend(fontsize=8)
    for ax, relative in ((axes[1], False), (axes[2], True)):
        for i, lab in enumerate(labels):
            rnd = results[lab]["random"]
            base = results[lab]["baseline"] if relative and results[lab]["baseline"] else 1.0
            c = _color(lab, i)
            ax.errorbar([r["k"] for r in rnd], [r["mean"] / base for r in rnd], yerr=[r["std"] / base for r in rnd],
                        color=c, marker="o", capsize=3, label=lab)
            for r in rnd:
                ax.scatter([r["k"]] * len(r["metrics"]), [m / base for m in r["metrics"]], color=c, s=8, alpha=0.35)
        ax.set_xlabel("number of blocks deleted at random (k)")
        ax.set_ylabel("fraction of the intact " + metric.split(" ")[0] if relative else metric)
        ax.set_title("k random blocks deleted" + (", relative to intact" if relative else " (Veit et al. fig. 5)"),
                     fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_responses(results: dict[str, list[dict]], path: str) -> str:
    """The ResNet paper's figure 7: std of the branch responses by layer index and sorted."""
    fig = new_figure((8, 6))
    axes = fig.subplots(2, 1)
    for i, (lab, rows) in enumerate(results.items()):
        stds = [r["std"] for r in rows]
        axes[0].plot(range(1, len(stds) + 1), stds, marker=".", color=_color(lab, i), label=lab)
        axes[1].plot(range(1, len(stds) + 1), sorted(stds, reverse=True), marker=".", color=_color(lab, i),
                     label=lab)
    axes[0].set_xlabel("layer index (original)")
    axes[1].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes:
        ax.set_ylabel("std")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("std of each block's branch output (after its last norm, before the addition / ReLU)", fontsize=9)
    return save_figure(fig, path)


def plot_paths(analysis: dict, path: str) -> str:
    """Veit et al. fig. 6: (a) path length distribution, (b) gradient magnitude per path length,
    (c) total gradient per path length (their product)."""
    fig = new_figure((15, 4))
    axes = fig.subplots(1, 3)
    n = analysis["n"]
    dist = analysis["distribution"]
    axes[0].bar([d["k"] for d in dist], [float(d["count"]) for d in dist], color="tab:blue")
    axes[0].set_xlabel("path length k")
    axes[0].set_ylabel("number of paths")
    axes[0].set_title(f"(a) path lengths: Binomial({n}, 1/2), {2 ** n:.3g} paths", fontsize=9)
    g = analysis["gradients"]
    ks = [r["k"] for r in g]
    axes[1].errorbar(ks, [r["mean"] for r in g], yerr=[r["std"] for r in g], marker="o", capsize=3)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("path length k")
    axes[1].set_ylabel("gradient magnitude at input")
    axes[1].set_title("(b) gradient magnitude of a path of length k", fontsize=9)
    axes[1].grid(True, alpha=0.3)
    eff = analysis["effective"]
    axes[2].bar([s["k"] for s in eff["share"]], [s["share"] for s in eff["share"]], color="tab:green")
    lo, hi = eff["interval"]
    axes[2].axvspan(lo - 0.5, hi + 0.5, color="tab:green", alpha=0.1)
    axes[2].set_xlabel("path length k")
    axes[2].set_ylabel("share of total gradient")
    axes[2].set_title(f"(c) total gradient by length: {eff['interval_mass'] * 100:.0f}% from k={lo}..{hi}",
                      fontsize=9)
    return save_figure(fig, path)


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (window 1 = unchanged)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def loss_curves(metrics_path: str) -> dict[str, tuple[list[int], list[float]]]:
    """{loss name: (iterations, values)} of a training run's metrics.jsonl."""
    rows = [r for r in read_metrics(metrics_path) if "total_loss" in r]
    keys = ["total_loss"] + sorted({k for r in rows for k in r if k.startswith("loss_")})
    return {k: ([r["iteration"] for r in rows if k in r], [r[k] for r in rows if k in r]) for k in keys}


def plot_degradation(runs: dict[str, str], path: str, window: int = 5) -> str:
    """Training losses of several runs ({label: metrics.jsonl}). Top row: each run's loss terms side
    by side (shared log axis), then the total losses overlaid; bottom row: each loss term overlaid
    across the runs. Curves are trailing moving averages of ``window`` logged points."""
    curves = {lab: loss_curves(mpath) for lab, mpath in runs.items()}
    terms = sorted({k for c in curves.values() for k in c if k != "total_loss"})
    ncols = max(len(runs) + 1, len(terms), 1)
    fig = new_figure((4.2 * ncols, 7.5))
    axes = fig.subplots(2, ncols, squeeze=False)
    top, bottom = axes[0], axes[1]
    for i, (lab, c) in enumerate(curves.items()):
        ax = top[i]
        for key, (its, vals) in c.items():
            ax.plot(its, smooth(vals, window), label=key, linewidth=2 if key == "total_loss" else 1)
        ax.set_title(lab, fontsize=10)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        its, vals = c["total_loss"]
        top[len(runs)].plot(its, smooth(vals, window), label=lab, color=_color(lab, i), linewidth=2)
        for j, key in enumerate(terms):
            if key in c:
                its, vals = c[key]
                bottom[j].plot(its, smooth(vals, window), label=lab, color=_color(lab, i))
    top[len(runs)].set_title("total training loss", fontsize=10)
    top[len(runs)].legend(fontsize=8)
    for j, key in enumerate(terms):
        bottom[j].set_title(key, fontsize=10)
        bottom[j].set_yscale("log")
        bottom[j].legend(fontsize=8)
    for ax in list(top[len(runs) + 1:]) + list(bottom[len(terms):]):
        ax.axis("off")
    for ax in list(top[: len(runs) + 1]) + list(bottom[: len(terms)]):
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
    top[0].set_ylabel("training loss")
    bottom[0].set_ylabel("training loss")
    return save_figure(fig, path)


def plot_dataset(report: dict, path: str) -> str:
    """Per-class boxes, box size / aspect / best-anchor-IoU histograms (configured anchors and
    thresholds as lines), coverage of the configured and suggested anchors."""
    fig = new_figure((15, 8))
    axes = fig.subplots(2, 3)
    ax = axes[0][0]
    names = [c["name"] for c in report["classes"]]
    ax.bar(range(len(names)), [c["boxes"] for c in report["classes"]], label="boxes")
    ax.bar(range(len(names)), [c["images"] for c in report["classes"]], width=0.4, label="images")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title(f"{report['dataset']}: {report['num_images']} images, {report['num_boxes']} boxes", fontsize=9)
    r = report["resize"]
    panels = [("sqrt_area", axes[0][1], report["anchors"]["configured"]["sizes"], False),
              ("aspect_h_over_w", axes[0][2], report["anchors"]["configured"]["ratios"], True),
              ("best_anchor_iou", axes[1][0], report["iou_thresholds"], False)]
    for key, ax, lines, log in panels:
        h = report["histograms"][key]
        if h["counts"]:
            edges = h["edges"]
            ax.stairs(h["counts"], edges)
            if log:
                ax.set_xscale("log")
        for v in lines:
            ax.axvline(v, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"{key} (px after test resize {r['MIN_SIZE_TEST']}/{r['MAX_SIZE_TEST']})" if key == "sqrt_area"
                     else key, fontsize=9)
    ax = axes[1][1]
    for key in ("width", "height"):
        h = report["histograms"][key]
        if h["counts"]:
            ax.stairs(h["counts"], h["edges"], label=key)
    ax.legend(fontsize=8)
    ax.set_title("box width / height (px after test resize)", fontsize=9)
    ax = axes[1][2]
    kinds = list(report["anchors"])
    parts = ("positive", "between", "below")
    bottom = [0.0] * len(kinds)
    for part, color in zip(parts, ("tab:green", "tab:orange", "tab:red")):
        vals = [100 * report["anchors"][k]["coverage"][part] for k in kinds]
        ax.bar(kinds, vals, bottom=bottom, color=color, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    lo, hi = report["iou_thresholds"]
    ax.set_ylabel("% of boxes")
    ax.set_title(f"best anchor IoU: >= {hi}, [{lo}, {hi}), < {lo}", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
