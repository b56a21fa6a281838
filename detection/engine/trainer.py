"""The training loop: iterations over an infinite loader, SGD, checkpoints, logs, evaluation."""
from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import time

import torch
from torch.autograd.profiler import record_function
from torch.nn.parallel import DistributedDataParallel

from detection.checkpoint import CheckpointNotFoundError
from detection.utils.comm import all_gather_object, get_world_size, is_main_process, reduce_dict, unwrap_model

from .best import BestMetric, default_metric
from .checkpointer import Checkpointer
from .events import EventWriter, plot_curves
from .solver import build_lr_scheduler, build_optimizer, sgd_kernel

logger = logging.getLogger(__name__)


class Trainer:
    """Trains ``model`` (already on its device, weights loaded) as ``cfg.SOLVER`` says.

    ``build_loader(start_iter)`` returns an iterator over batches (lists of input dicts) such
    that batches from ``start_iter`` on equal those of an uninterrupted run: together with the
    saved RNG states this makes a resumed run continue exactly where the first one stopped.
    ``evaluate_fn(model)`` returns {dataset: metrics} and is called every TEST.EVAL_PERIOD
    iterations and at the end. ``extra_checkpoint_data`` (class names, category ids) is saved
    with every checkpoint so a trained model carries its label mapping.

    TEST.BEST_METRIC of each evaluation (first dataset) keeps OUTPUT_DIR/model_best.pth; with
    TEST.PATIENCE > 0 training stops after that many evaluations without a new best. That state
    is part of every checkpoint. At an iteration that both evaluates and checkpoints, the
    evaluation comes first, so the checkpoint holds its outcome.
    """

    def __init__(self, cfg, model, build_loader, evaluate_fn=None, extra_checkpoint_data: dict | None = None):
        self.cfg = cfg
        self.model = model
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.device = next(model.parameters()).device
        amp = cfg.SOLVER.AMP
        if amp not in ("", "fp16", "bf16"):
            raise ValueError(f"SOLVER.AMP must be '', 'fp16' or 'bf16'; got {amp!r}")
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp) if self.device.type == "cuda" else None
        if amp and self.amp_dtype is None:
            logger.warning("SOLVER.AMP=%s is for CUDA; training in fp32 on %s", amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.build_loader = build_loader
        self.evaluate_fn = evaluate_fn
        self.extra = extra_checkpoint_data or {}
        self.checkpointer = Checkpointer(cfg.OUTPUT_DIR, self.model, self.optimizer, self.scheduler, self.scaler)
        self.events = EventWriter(cfg.OUTPUT_DIR, enabled=is_main_process())
        self.iteration = 0
        self.pending = []  # (iteration, losses, total loss) of the steps not checked yet, on the device
        # An empty TEST.BEST_METRIC means the headline metric of the model's kind of evaluation.
        metric = cfg.TEST.BEST_METRIC or default_metric("loc" if model.task == "localization" else "coco")
        self.best = BestMetric(metric, cfg.TEST.BEST_METRIC_MODE, cfg.TEST.PATIENCE)

    def resume_or_start(self, resume: bool) -> int:
        if is_main_process():
            self.checkpointer.remove_temporary_files()
        if resume and self.checkpointer.last_checkpoint():
            data = self.checkpointer.resume()
            for group in self.optimizer.param_groups:  # this config's SGD kernel, not the checkpoint's
                group.update(sgd_kernel(self.cfg.SOLVER.SGD_IMPL))
            self.iteration = data["iteration"]
            if self.best.load_state_dict(data.get("best")):
                logger.info("resumed %s; %d evaluation(s) since", self.best.describe(), self.best.since)
            self.events.truncate_after(self.iteration)
        elif resume:
            logger.info("--resume: no checkpoint in %s yet, starting from iteration 0", self.cfg.OUTPUT_DIR)
        return self.iteration

    def save(self, name: str, pointer: bool = True) -> None:
        if is_main_process():
            self.checkpointer.save(name, self.iteration, pointer=pointer, config=self.cfg.dump(),
                                   best=self.best.state_dict(), **self.extra)

    def run_step(self, batch) -> dict[str, torch.Tensor]:
        """One SGD step. Returns the detached losses, still on the device: reading them is a host
        sync, left to ``check_losses`` at log, evaluation and checkpoint iterations."""
        autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast, record_function("forward"):
            losses = self.model(batch)
        with record_function("backward"):
            total = sum(losses.values())
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                total.backward()
        with record_function("optimizer"):
            if self.cfg.SOLVER.CLIP_GRADIENTS > 0:
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.SOLVER.CLIP_GRADIENTS)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
        self.pending.append((self.iteration, {k: v.detach() for k, v in losses.items()}, total.detach()))
        return self.pending[-1][1]

    def check_losses(self) -> dict[str, float]:
        """The losses of the last step as numbers (with ``total_loss``), after checking that every
        step since the last check had a finite loss: one host sync for all of them."""
        if not self.pending:
            return {}
        totals = torch.stack([total for _, _, total in self.pending])
        bad = ~torch.isfinite(totals)
        if bad.any():
            iteration, losses, _ = self.pending[int(bad.nonzero()[0, 0])]
            self.pending = []
            try:
                last = self.checkpointer.last_checkpoint()
            except CheckpointNotFoundError:  # checkpoints of an earlier run, no pointer yet
                last = None
            raise FloatingPointError(
                f"non-finite loss at iteration {iteration}: "
                + ", ".join(f"{k}={float(v)}" for k, v in losses.items())
                + f". Last good checkpoint: {last or 'none saved yet'}. Lower SOLVER.BASE_LR, lengthen "
                  "SOLVER.WARMUP_ITERS or set SOLVER.CLIP_GRADIENTS."
            )
        values = {k: float(v) for k, v in self.pending[-1][1].items()}
        values["total_loss"] = sum(values.values())
        self.pending = []
        return values

    def evaluate(self) -> None:
        if self.evaluate_fn is None:
            return
        model = unwrap_model(self.model)
        results = self.evaluate_fn(model)
        for name, metrics in results.items():
            scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            self.events.write(self.iteration, {**scalars, "dataset": name})
        self.track_best(results)

    def track_best(self, results: dict) -> None:
        """Update the best metric with one evaluation (rank 0's results, shared with every rank);
        save model_best.pth on a new best."""
        previous = self.best.describe()
        improved = False
        if is_main_process() and results:  # other ranks get {} from the evaluators
            try:
                value = self.best.value_of(results)
            except KeyError as e:  # e.g. an evaluation that processed no image: no improvement
                logger.warning("%s; counted as no improvement", e.args[0])
                value = math.nan
            improved = self.best.update(value, self.iteration)
        state, improved = all_gather_object((self.best.state_dict(), improved))[0]
        self.best.load_state_dict(state)
        if improved:
            self.save("model_best", pointer=False)
            logger.info("new %s (before: %s): saved model_best.pth", self.best.describe(), previous)
        else:
            logger.info("%s: no new best (%s; %d evaluation(s) without one%s)", self.best.metric,
                        self.best.describe(), self.best.since,
                        f", TEST.PATIENCE {self.best.patience}" if self.best.patience else "")

    def train(self) -> None:
        s = self.cfg.SOLVER
        start, max_iter = self.iteration, s.MAX_ITER
        if self.best.exhausted:
            logger.info("training had stopped early at iteration %d (%s, %d evaluations without a new best, "
                        "TEST.PATIENCE %d): nothing to do; raise TEST.PATIENCE to continue",
                        start, self.best.describe(), self.best.since, self.best.patience)
            self.events.close()
            return
        logger.info("training from iteration %d to %d", start, max_iter)
        data = self.build_loader(start)
        loader = iter(data)
        self.model.train()
        window, t_start = [], time.perf_counter()
        while self.iteration < max_iter and not self.best.exhausted:
            t0 = time.perf_counter()
            batch = next(loader)
            data_time = time.perf_counter() - t0
            try:
                self.run_step(batch)
            except FloatingPointError:  # e.g. the RPN's non-finite boxes after an unchecked non-finite loss
                self.check_losses()  # that loss, with its iteration, is the better message
                raise
            self.iteration += 1
            window.append(time.perf_counter() - t0)
            it = self.iteration
            evaluates = self.cfg.TEST.EVAL_PERIOD > 0 and it % self.cfg.TEST.EVAL_PERIOD == 0 and it != max_iter
            saves = s.CHECKPOINT_PERIOD > 0 and it % s.CHECKPOINT_PERIOD == 0 and it != max_iter
            if it % self.cfg.LOG_PERIOD == 0 or it == max_iter or it == start + 1:
                values = reduce_dict(self.check_losses())
                sec = sum(window) / len(window)
                lr = self.optimizer.param_groups[0]["lr"]
                self.events.write(it, {**values, "lr": lr, "time": sec, "data_time": data_time})
                eta = datetime.timedelta(seconds=int(sec * (max_iter - it)))
                terms = "  ".join(f"{k}: {v:.4f}" for k, v in values.items() if k != "total_loss")
                logger.info("iter %d/%d  total_loss: %.4f  %s  lr: %.5g  %.3f s/it  eta %s",
                            it, max_iter, values["total_loss"], terms, lr, sec, eta)
                window = []
            if evaluates or saves:
                self.check_losses()  # nothing is evaluated or saved after a non-finite loss
            if evaluates:
                self.evaluate()
            if saves:
                self.save(f"model_{it:07d}")
        self.check_losses()
        logger.info("training done in %.1f min", (time.perf_counter() - t_start) / 60)
        skipped = getattr(getattr(data, "dataset", None), "skipped", None)  # a TrainDataset's unreadable images
        if skipped is not None:
            skipped.log_total()
        if self.best.exhausted:
            logger.info("early stop at iteration %d: %s has not improved for %d evaluations (TEST.PATIENCE %d); "
                        "%s is in model_best.pth", self.iteration, self.best.metric, self.best.since,
                        self.best.patience, self.best.describe())
        else:
            self.evaluate()
        self.save("model_final")
        self.events.close()
        if self.events.enabled and os.path.isfile(self.events.path):
            plot_curves(self.events.path, os.path.join(self.cfg.OUTPUT_DIR, "curves.png"))
