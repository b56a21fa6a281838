"""Best checkpoint and early stopping: TEST.BEST_METRIC / BEST_METRIC_MODE / PATIENCE, across --resume."""
import json
import math
import os
import shutil

import pytest
import torch

from detection.engine.best import BestMetric, default_metric, known_metrics, metric_mode

from tiny import QUICKSTART, tiny_opts
from tool_scripts import load_tool



def test_direction_comes_from_the_metric_name_unless_given():
    assert metric_mode("AP50") == "max" and metric_mode("AR100") == "max"
    assert metric_mode("loc_err_gt") == "min" and metric_mode("cls_err_top5") == "min"
    assert metric_mode("loc_err_gt", "max") == "max"
    with pytest.raises(ValueError, match="BEST_METRIC_MODE"):
        metric_mode("AP", "up")


def test_best_metric_counts_evaluations_without_improvement_and_ignores_nan():
    best = BestMetric("loc_err_gt", patience=2)
    assert best.update(30.0, 100) and best.since == 0
    assert not best.update(math.nan, 200) and best.since == 1
    assert best.update(20.0, 300) and (best.value, best.iteration, best.since) == (20.0, 300, 0)
    assert not best.update(20.0, 400)  # equal is not better
    assert not best.exhausted
    assert not best.update(25.0, 500) and best.exhausted
    again = BestMetric("loc_err_gt", patience=2)
    assert again.load_state_dict(best.state_dict()) and again.state_dict() == best.state_dict()
    assert not BestMetric("AP").load_state_dict(best.state_dict())  # another metric: start afresh


def test_unknown_metric_names_the_available_ones():
    with pytest.raises(KeyError, match="'mAP' is not a metric of the evaluation on val; available: AP50, AP"):
        BestMetric("mAP").value_of({"val": {"AP50": 1.0, "AP": 0.5, "per_class_AP50": {}}})


def _expected(values: list[tuple[int, float]], patience: int) -> tuple[int, float, int]:
    """(best iteration, best value, stop iteration) by the rules, from the logged evaluations."""
    best_it, best, since = None, None, 0
    for it, v in values:
        if not math.isnan(v) and (best is None or v > best):
            best_it, best, since = it, v, 0
        else:
            since += 1
        if since >= patience:
            return best_it, best, it
    return best_it, best, values[-1][0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("best")
    opts = tiny_opts(tmp / "data", tmp / "out", 8, **{"TEST.EVAL_PERIOD": 1, "TEST.PATIENCE": 2,
                                                       "SOLVER.CHECKPOINT_PERIOD": 1})
    load_tool("train_net").main(["--config", QUICKSTART, *opts])
    return tmp, opts


def _evals(out) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["iteration"], r["AP50"]) for r in rows if "AP50" in r]


def test_best_checkpoint_and_early_stop_follow_the_logged_metric(run):
    tmp, _ = run
    out = tmp / "out"
    best_it, best, stop = _expected(_evals(out), 2)
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == stop < 8
    saved = torch.load(out / "model_best.pth", weights_only=True)
    assert saved["iteration"] == best_it and saved["best"]["value"] == pytest.approx(best)
    assert final["best"] == {"metric": "AP50", "mode": "max", "value": pytest.approx(best), "iteration": best_it,
                             "since": 2}
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"  # model_best is not resumed from
    log = (out / "log.txt").read_text()
    assert f"early stop at iteration {stop}: AP50 has not improved for 2 evaluations" in log
    assert f"new best AP50 {best:.4g} at iteration {best_it}" in log


def test_resume_after_a_kill_keeps_the_best_value_and_the_patience_count(run, tmp_path):
    tmp, opts = run
    out, killed = tmp / "out", tmp_path / "killed"
    shutil.copytree(out, killed)
    # As if killed right after the checkpoint of iteration 2: nothing later exists.
    for name in os.listdir(killed):
        if name.endswith(".pth") and name != "model_0000002.pth":
            data = torch.load(killed / name, weights_only=True)
            if data["iteration"] > 2:
                os.remove(killed / name)
    (killed / "last_checkpoint").write_text("model_0000002.pth")
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    (killed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["iteration"] <= 2))
    resumed_opts = [o if o != str(out) else str(killed) for o in opts]
    load_tool("train_net").main(["--config", QUICKSTART, "--resume", *resumed_opts])
    assert _evals(killed) == pytest.approx(_evals(out))
    for name in ("model_final.pth", "model_best.pth"):
        a = torch.load(out / name, weights_only=True)
        b = torch.load(killed / name, weights_only=True)
        assert a["iteration"] == b["iteration"] and a["best"] == b["best"], name
    # Resuming a run that stopped early trains nothing more.
    before = (killed / "model_final.pth").stat().st_mtime_ns
    load_tool("train_net").main(["--config", QUICKSTART, "--resume", *resumed_opts])
    assert (killed / "model_final.pth").stat().st_mtime_ns == before
    assert "nothing to do; raise TEST.PATIENCE to continue" in (killed / "log.txt").read_text()


def test_eval_and_demo_take_model_best(run, tmp_path):
    tmp, opts = run
    out = tmp / "out"
    saved = torch.load(out / "model_best.pth", weights_only=True)
    eval_opts = tiny_opts(tmp / "data", tmp_path / "e", 8)
    results = load_tool("eval").main(["--config", QUICKSTART, "--weights", str(out / "model_best.pth"), *eval_opts])
    assert results["synthetic_val"]["AP50"] == pytest.approx(saved["best"]["value"], abs=1e-9)
    from detection.config import load_config
    from detection.data import get_dataset_info

    images = os.path.join(get_dataset_info(load_config(QUICKSTART, eval_opts), "synthetic_val").image_root, "val")
    written = load_tool("demo").main(["--config", QUICKSTART, "--weights", str(out / "model_best.pth"), "--input",
                                  os.path.join(images, sorted(os.listdir(images))[0]), "--output",
                                  str(tmp_path / "demo"), *eval_opts])
    assert len(written) == 1


def test_unknown_best_metric_stops_training_at_start_up(tmp_path):
    opts = tiny_opts(tmp_path / "data", tmp_path / "out", 2, **{"TEST.BEST_METRIC": "mAP"})
    with pytest.raises(ValueError, match=r"TEST.BEST_METRIC 'mAP' is not a metric of the coco evaluation of "
                                         r"synthetic_val; available: AP, AP50"):
        load_tool("train_net").main(["--config", QUICKSTART, *opts])
    assert not (tmp_path / "out" / "model_final.pth").exists()


def test_an_empty_best_metric_is_the_headline_of_the_models_kind_of_evaluation():
    assert default_metric("coco") == "AP50" and default_metric("voc") == "AP50"
    assert default_metric("loc") == "loc_err_gt"
    assert "best_f1" in known_metrics("coco")  # any scalar of the detection metrics, not only the COCO stats
