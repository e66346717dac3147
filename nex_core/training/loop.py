"""The training loop of :class:`~.trainer.Trainer`: steps until the run's length (``train.steps``, or the
steps that fit in ``train.minutes``; see ``budget.py``) is reached or the run is stopped, with progress
events, held-out evaluations and checkpoints at their steps or fractions of the run, and the final
checkpoint and evaluation."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from .budget import BudgetLength, StepLength, crossed_mark, marks_ahead
from .distributed import any_rank
from .resume import record_steps


@dataclass
class TrainResult:
    step: int
    loss: float
    test_psnr: float | None
    cancelled: bool
    seconds: float


def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def make_length(trainer: Any) -> StepLength | BudgetLength:
    """The run's length: ``train.steps``, or a budget of ``train.minutes`` less the time the run's earlier
    sessions spent; a resume with the same budget keeps the progress reached (so the rates never step
    back up), a changed budget is planned afresh."""
    t = trainer.cfg.train
    if t.minutes <= 0:
        return StepLength(t.steps)
    saved = trainer.saved_budget
    same = float(saved.get("minutes", 0.0)) == t.minutes
    return BudgetLength(minutes=t.minutes, started=trainer.started, first_step=trainer.step,
                        spent_s=float(saved.get("spent_s", 0.0)),
                        floor=float(saved.get("progress", 0.0)) if same else 0.0,
                        reserve=lambda: end_reserve(trainer) + checks_reserve(trainer))


def eval_estimate(trainer: Any) -> float:
    """Seconds a held-out evaluation takes: as measured last; before the first, the preview's time per
    (pixel, plane) times the points the once-per-plane render evaluates (a per-view figure would count the
    shared plane evaluations once per view: three times too much for three views)."""
    scene = trainer.scene
    if trainer.eval_s is not None or not scene.test_ids:
        return trainer.eval_s or 0.0
    if trainer.preview_s is None:
        return 0.0
    points = getattr(trainer, "eval_points", None)
    if points is None:
        from ..runtime.plane_render import VIEW_STATE_BUDGET, evaluated_texels, view_groups

        cams = [scene.cameras[i] for i in scene.test_ids]
        points = sum(evaluated_texels(trainer.geom, trainer.cfg.model.sublayers, trainer.ref_camera,
                                      [cams[i] for i in group])
                     for group in view_groups(trainer.model, cams, VIEW_STATE_BUDGET))
        trainer.eval_points = points
    return trainer.preview_s / trainer.geom.n_planes * points


def end_reserve(trainer: Any) -> float:
    """Seconds the end of a run needs: its checkpoint and held-out evaluation, as measured last."""
    return (trainer.checkpoint_s or 0.0) + eval_estimate(trainer)


# A budget run's held-out evaluations (the final one included) take at most this share of its budget; fewer
# are made where ``train.evals`` of them would take more (at 1008 x 756 on a 2-core CPU one takes 1-2 min).
EVAL_SHARE = 0.15


def eval_count(trainer: Any) -> int:
    """The run's evaluation marks (``k / count`` of the run, and its end): ``train.evals``, or in a budget run
    as many as fit in ``EVAL_SHARE`` of the budget at the estimated evaluation time (at least the final
    one). It only ever decreases during a run; a mark counts when a step crosses it, so a smaller count never
    brings an evaluation at once."""
    t = trainer.cfg.train
    length = getattr(trainer, "length", None)
    count = t.evals
    estimate = eval_estimate(trainer)
    if length is not None and length.is_budget and count > 1 and estimate > 0:
        count = max(1, min(count, int(EVAL_SHARE * 60.0 * t.minutes / estimate)))
    cap = getattr(trainer, "eval_count_cap", None)
    if cap is not None:
        count = min(count, cap)
    trainer.eval_count_cap = count
    return count


def checks_reserve(trainer: Any) -> float:
    """Seconds the evaluations and checkpoints still ahead at marks of the run (``train.evals``,
    ``train.checkpoints``) will take, each as its last one did."""
    t = trainer.cfg.train
    length = getattr(trainer, "length", None)
    progress = length.progress_at(trainer.step) if length is not None else 0.0
    return (marks_ahead(progress, eval_count(trainer)) * eval_estimate(trainer)
            + marks_ahead(progress, t.checkpoints) * (trainer.checkpoint_s or 0.0))


def spent_s(trainer: Any) -> float:
    """Seconds this run has trained, its earlier sessions included (what a checkpoint records)."""
    return float(trainer.saved_budget.get("spent_s", 0.0)) + time.monotonic() - trainer.started


def _agree(trainer: Any):
    """A function giving rank 0's value on every rank (a budget run's planned steps), or None in one process."""
    if not (trainer.dist.enabled and trainer.length.is_budget):
        return None

    def agree(value: int) -> int:
        t = torch.tensor([float(value)], dtype=torch.float64, device=trainer.device)
        torch.distributed.broadcast(t, src=0)
        return int(t.item())

    return agree


def timed_test_psnr(trainer: Any) -> float | None:
    """The held-out PSNR, remembering how long it took (a budget run keeps that time for its end)."""
    began = time.monotonic()
    value = trainer.test_psnr()
    if value is not None:
        trainer.eval_s = time.monotonic() - began
    return value


def _report_plan(trainer: Any, n_before: int, budget: dict) -> None:
    """A ``budget`` event for a new plan of a budget run, and a warning when the first leaves no step."""
    plans = getattr(trainer.length, "plans", ())
    if len(plans) <= n_before:
        return
    plan = plans[-1]
    trainer.events.emit("train", "budget", step=trainer.step, steps=plan.total, step_s=plan.step_s,
                        reserve_s=plan.reserve_s, time_left_s=plan.time_left_s, **budget)
    if len(plans) == 1 and plan.total <= plan.step:
        trainer.events.emit("train", "warning", step=trainer.step,
                            message=f"a budget of {trainer.cfg.train.minutes:g} min is too short here: setup "
                                    f"and the first steps took {spent_s(trainer):.0f} s and the final checkpoint "
                                    f"and evaluation need about {plan.reserve_s:.0f} s, so the run ends now; "
                                    f"give more --minutes")


def run_loop(trainer: Any) -> TrainResult:
    """Train the trainer's model to the end of its run or until it is stopped."""
    t, length = trainer.cfg.train, trainer.length
    start_time = time.time()
    window_start, window_steps = time.time(), 0
    loss = mse = float("nan")
    rays_per_step = 3 * (t.rays // 3)
    test_psnr = None
    agree = _agree(trainer)
    length.begin(trainer.step, time.monotonic())
    budget = {"budget_s": 60.0 * t.minutes} if length.is_budget else {}
    scene, events = trainer.scene, trainer.events
    if length.is_budget:
        budget["time_left_s"] = length.time_left(time.monotonic())
    events.emit("train", "start", step=trainer.step, steps=length.total or 0, n_train=len(scene.train_ids),
                n_test=len(scene.test_ids), planes=trainer.geom.n_planes, **budget)
    budget.pop("time_left_s", None)
    _report_plan(trainer, 0, budget)
    warm = trainer.step + getattr(length, "warmup_steps", 0)
    while length.total is None or trainer.step < length.total:
        if any_rank(trainer.should_stop(), trainer.dist, trainer.device):
            trainer.checkpoint()
            if length.is_budget and length.total is not None:
                record_steps(trainer.cfg, trainer.run_dir, length.total, trainer.dist.is_main)
            events.emit("cancelled", "cancelled", step=trainer.step, steps=length.total or 0)
            return TrainResult(trainer.step, loss, test_psnr, True, time.time() - start_time)
        before = length.progress_at(trainer.step)
        loss, mse = trainer.train_step()
        window_steps += 1
        if not math.isfinite(loss):
            trainer._roll_back(loss)
            continue
        if length.is_budget and trainer.step == warm and trainer.checkpoint_s is None:
            trainer.checkpoint()  # timed: the end's checkpoint and evaluation are planned with it
            length.add_check_time(trainer.checkpoint_s or 0.0)
        n_plans = len(getattr(length, "plans", ()))
        length.after_step(trainer.step, time.monotonic(), agree)
        _report_plan(trainer, n_plans, budget)
        after, total = length.progress_at(trainer.step), length.total
        ended = total is not None and trainer.step >= total
        if trainer.step % t.log_every == 0 or ended:
            elapsed = time.time() - window_start
            rate = window_steps / elapsed if elapsed > 0 else 0.0
            eta = (length.time_left(time.monotonic()) if length.is_budget
                   else (total - trainer.step) / rate if rate > 0 else None)
            events.emit("train", "progress", step=trainer.step, steps=total or 0, loss=loss,
                        psnr=psnr_from_mse(mse), rays_per_s=rate * rays_per_step, eta_s=eta,
                        lr=t.lr * trainer.learning_rate_factor(trainer.step), progress=after)
            window_start, window_steps = time.time(), 0
        if ended:
            break
        # A check at a mark is one of a fixed number (its time is in the budget's reserve, not the step
        # time); one every N steps costs in proportion to the steps, so it stays in the step time.
        checks_began = time.monotonic()
        eval_mark = crossed_mark(before, after, eval_count(trainer))
        checkpoint_mark = crossed_mark(before, after, t.checkpoints)
        if (t.eval_every and trainer.step % t.eval_every == 0) or eval_mark:
            test_psnr = timed_test_psnr(trainer)
            if not trainer.should_stop():  # else stopped inside the render: the next step stops the run
                events.emit("eval", "test_psnr", step=trainer.step, steps=total or 0, test_psnr=test_psnr,
                            elapsed_s=time.time() - start_time)
            window_start = time.time()
        if (t.checkpoint_every and trainer.step % t.checkpoint_every == 0) or checkpoint_mark:
            trainer.checkpoint()
        if eval_mark or checkpoint_mark:
            length.add_check_time(time.monotonic() - checks_began)
    trainer.checkpoint()  # (also after a warm-up checkpoint at this step: this one marks the budget used up)
    if length.is_budget:
        record_steps(trainer.cfg, trainer.run_dir, trainer.step, trainer.dist.is_main)
    test_psnr = timed_test_psnr(trainer)
    if trainer.should_stop():  # asked to stop during the final evaluation: the model is saved, skip the score
        test_psnr = None
        events.emit("train", "warning", step=trainer.step, message="stopped during the final held-out "
                    f"evaluation: the trained model is saved; `nex eval {trainer.run_dir}` scores it")
    else:
        events.emit("eval", "test_psnr", step=trainer.step, steps=trainer.step, test_psnr=test_psnr,
                    elapsed_s=time.time() - start_time)
    if length.is_budget:
        budget["spent_s"] = spent_s(trainer)
    events.emit("done", "done", step=trainer.step, steps=trainer.step,
                loss=loss if math.isfinite(loss) else None, test_psnr=test_psnr, **budget)
    return TrainResult(trainer.step, loss, test_psnr, False, time.time() - start_time)

