"""How long a run is and where it stands: progress as a fraction of the run, the learning-rate factor and
the evaluation/checkpoint marks as functions of it, and the time budget of ``train.minutes``. Pure Python
(the clock is injected), so the schedule is tested without training.

A fixed-length run (:class:`StepLength`) has ``progress = step / train.steps``. A budget run
(:class:`BudgetLength`) measures its step time after a short warm-up, plans the total steps that fit in
the time left (minus what the final checkpoint and evaluation are estimated to take), and plans again
every ``1 / replans`` of the run (5 %), and whenever the run would otherwise end past its deadline. Its
progress is ``step / planned total``, held at its highest value so far: a new, longer plan never moves the
run back to an earlier fraction, so the learning rate never steps back up and no mark is passed twice.

The step time leaves out the time the run's checks (held-out evaluations, checkpoints) took, as the loop
reports it (:meth:`BudgetLength.add_check_time`): a run has a fixed number of them, so their cost is kept in
the reserve (the checks still ahead, from the trainer) instead of being spread over the steps. Spread over
the steps, one slow evaluation (minutes at 1008 x 756) shortened the plan, which moved the next marks
before the current step, which ran the next evaluation at once, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

EPS = 1e-12  # float slack when comparing a progress with a fraction (1000 / 1200 against 5 / 6)


def decay_factor(progress: float, decay_at: Sequence[float], rate: float) -> float:
    """``rate ** k``, with ``k`` the number of decay points (fractions of the run) at or before ``progress``."""
    return rate ** sum(1 for point in decay_at if progress + EPS >= point)


def marks_ahead(progress: float, count: int) -> int:
    """How many of the marks ``k / count`` (``0 < k < count``; the end has its own) lie after ``progress``."""
    if count <= 1:
        return 0
    return max(0, count - 1 - min(math.floor(progress * count + EPS), count - 1))


def crossed_mark(before: float, after: float, count: int) -> bool:
    """Whether one of the marks ``k / count`` (``k < count``; the end has its own) lies in ``(before, after]``."""
    if count <= 1:
        return False
    last = count - 1
    return min(math.floor(after * count + EPS), last) > min(math.floor(before * count + EPS), last)


class StepLength:
    """A run of a fixed number of steps."""

    is_budget = False

    def __init__(self, steps: int):
        self.total: int | None = int(steps)

    def progress_at(self, step: int) -> float:
        """The fraction of the run done after ``step`` steps."""
        return min(1.0, step / self.total) if self.total else 1.0

    def add_check_time(self, seconds: float) -> None:
        """Nothing to leave out: the length is fixed."""

    def begin(self, step: int, now: float) -> None:
        """Nothing to measure: the length is fixed."""

    def after_step(self, step: int, now: float, agree: Callable[[int], int] | None = None) -> None:
        """Nothing to re-estimate: the length is fixed."""

    def time_left(self, now: float) -> float | None:
        return None


@dataclass
class Plan:
    """One estimate of a budget run's length (what the ``budget`` event reports)."""

    step: int  # steps done when it was made
    total: int  # steps the run will have
    step_s: float  # measured seconds a step (the checks between them left out)
    reserve_s: float  # seconds kept for the checks still ahead and the final checkpoint and evaluation
    time_left_s: float  # seconds to the deadline when it was made


@dataclass
class BudgetLength:
    """A run that ends when its time is up: ``minutes`` of budget, of which ``spent_s`` went to earlier
    sessions of the run (resume); this session began at ``started`` (on the clock of the times given to
    :meth:`after_step`: ``time.monotonic()`` in the trainer) with ``first_step`` steps done.

    ``floor`` is the progress reached before (kept when the same budget is resumed). ``reserve`` gives
    the seconds the rest of the run needs besides its steps (the checks ahead, the final checkpoint and
    evaluation), as the trainer has measured them."""

    minutes: float
    started: float
    first_step: int
    spent_s: float = 0.0
    floor: float = 0.0
    reserve: Callable[[], float] = lambda: 0.0
    warmup_steps: int = 3  # the first steps (allocation, thread start-up) are not timed
    min_window_steps: int = 5
    min_window_s: float = 1.0
    window_fraction: float = 0.02  # and at least this share of the budget is measured before the first plan
    replans: int = 20
    is_budget = True
    total: int | None = None
    plans: list[Plan] = field(default_factory=list)
    _times: list[tuple[int, float, float]] = field(default_factory=list)  # (step, time, check seconds so far)
    _next_plan: int = 0
    _checks_s: float = 0.0  # seconds the checks of this session took (left out of the step time)

    @property
    def deadline(self) -> float:
        return self.started + 60.0 * self.minutes - self.spent_s

    def spent_at(self, now: float) -> float:
        """Budget seconds used by ``now`` (earlier sessions included): what a checkpoint records."""
        return self.spent_s + (now - self.started)

    def time_left(self, now: float) -> float:
        return max(0.0, self.deadline - now)

    def progress_at(self, step: int) -> float:
        """The fraction of the run done after ``step`` steps under the current plan (never below ``floor``)."""
        if self.total is None:
            return self.floor
        return max(self.floor, min(1.0, step / self.total) if self.total else 1.0)

    def add_check_time(self, seconds: float) -> None:
        """Seconds an evaluation or checkpoint between steps took: not part of the step time."""
        self._checks_s += max(0.0, seconds)

    def begin(self, step: int, now: float) -> None:
        """Before the first step: a budget already spent (a finished run resumed) ends the run at once."""
        if now >= self.deadline:
            self._plan(step, now)

    def after_step(self, step: int, now: float, agree: Callable[[int], int] | None = None) -> None:
        """Account for a finished step: start the timing window, plan when due, and stop the run early
        when even one more step would end past the deadline. ``agree`` makes every process of a
        multi-process run take the same total (rank 0's)."""
        reserve = self.reserve()
        if not self._times and (step - self.first_step >= self.warmup_steps or now + reserve >= self.deadline):
            self._times.append((step, now, self._checks_s))  # the timing window starts
        late = now + self._step_s(step, now) + reserve > self.deadline  # the next step would end too late
        if self.total is None:
            due = bool(self._times) and (late or self._window_done(step, now))
        else:
            due = late or step >= self._next_plan
        if due:
            self._plan(step, now)
        if agree is not None:
            agreed = agree(-1 if self.total is None else self.total)
            self.total = None if agreed < 0 else agreed
        self.floor = self.progress_at(step)

    def _window_done(self, step: int, now: float) -> bool:
        w_step, w_time, w_checks = self._times[0]
        return (step - w_step >= self.min_window_steps
                and now - w_time - (self._checks_s - w_checks)
                >= max(self.min_window_s, self.window_fraction * 60.0 * self.minutes))

    def _step_s(self, step: int, now: float) -> float:
        """Seconds a step, over the last two plan intervals (so a change of machine load shows soon), the
        checks in them left out."""
        ref = self._times[max(0, len(self._times) - 2)] if self._times else (step, now, self._checks_s)
        if ref[0] >= step and self._times:
            ref = self._times[0]
        if ref[0] >= step:  # no timed interval yet: the whole session so far (setup included), cautiously
            ref = (self.first_step, self.started, 0.0)
        ref_step, ref_time, ref_checks = ref
        busy = now - ref_time - (self._checks_s - ref_checks)
        return max(0.0, busy) / (step - ref_step) if step > ref_step else 0.0

    def _plan(self, step: int, now: float) -> None:
        step_s, reserve = self._step_s(step, now), self.reserve()
        left = self.deadline - now - reserve
        more = int(left / step_s) if step_s > 0 and left > 0 else 0
        self.total = step + more
        self._next_plan = step + max(1, self.total // self.replans)
        self.plans.append(Plan(step, self.total, step_s, reserve, self.deadline - now))
        if not self._times or self._times[-1][0] != step:
            self._times.append((step, now, self._checks_s))

