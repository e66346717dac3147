"""Training to a time budget (``--minutes``) and a schedule set as fractions of the run (budget.py).

Most tests drive :class:`BudgetLength` with a simulated clock and step times (a steady machine, a noisy one,
one that slows down or speeds up half-way), the way the training loop does; a few train the tiny preset
for real. "Monotone in the budget" is checked as: on the same machine (the same step time for every
budget), a longer budget plans at least as many steps, and at every step its learning rate is at least
as high (no decay comes earlier, in steps), every decay still falls at its fraction of the run, and the
evaluations and checkpoints come no earlier either.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.configs import DEMO_SCENE, tiny_config

from nex_core.cli import main
from nex_core.io import config as config_mod
from nex_core.io.errors import ConfigError
from nex_core.io.events import read_events
from nex_core.training.budget import BudgetLength, StepLength, crossed_mark, decay_factor, marks_ahead
from nex_core.training.trainer import Trainer

FAST_DECAY = [5 / 6]


def simulate(minutes: float, step_s, end_s: float = 0.4, setup_s: float = 0.5, decay_at=FAST_DECAY,
             marks: int = 6, spent_s: float = 0.0, floor: float = 0.0, first_step: int = 0,
             stop_at: float | None = None, check_s: float = 0.0):
    """One session of a budget run on a simulated clock: ``step_s(step, now)`` seconds a step, ``end_s``
    for the final checkpoint and evaluation (known once the first step has been timed, as the trainer's
    warm-up checkpoint does), ``check_s`` for the evaluation and checkpoint at each mark (reported to the
    length and reserved for the marks ahead, as the training loop does). Returns (steps, seconds from the
    session's start, lr factor before each step, steps with a mark, the BudgetLength)."""
    now = setup_s
    measured = []
    step = first_step

    def reserve() -> float:
        return end_s + marks_ahead(length.progress_at(step), marks) * check_s if measured else 0.0

    length = BudgetLength(minutes=minutes, started=0.0, first_step=first_step, spent_s=spent_s, floor=floor,
                          reserve=reserve)
    length.begin(step, now)
    lrs, marked = [], []
    while length.total is None or step < length.total:
        if stop_at is not None and now >= stop_at:
            return step, now, lrs, marked, length
        before = length.progress_at(step)
        lrs.append(decay_factor(before, decay_at, 0.1))
        now += step_s(step, now)
        step += 1
        measured.append(step)
        length.after_step(step, now)
        if step < (length.total or step + 1) and crossed_mark(before, length.progress_at(step), marks):
            marked.append(step)
            now += check_s
            length.add_check_time(check_s)
    return step, now + end_s, lrs, marked, length


def steady(seconds):
    return lambda step, now: seconds


def noisy(seconds, seed):
    rng = random.Random(seed)
    return lambda step, now: seconds * rng.uniform(0.6, 1.4)


def changing(seconds, factor, at_s):
    """``seconds`` a step, times ``factor`` from ``at_s`` seconds on (other jobs start on the machine)."""
    return lambda step, now: seconds * (factor if now >= at_s else 1.0)


MACHINES = [("steady", lambda b: steady(0.05)), ("noisy", lambda b: noisy(0.05, 3)),
            ("slows down 2x half-way", lambda b: changing(0.05, 2.0, 30 * b)),
            ("slows down 2x at 90 %", lambda b: changing(0.05, 2.0, 54 * b)),
            ("speeds up 2x half-way", lambda b: changing(0.05, 0.5, 30 * b)),
            ("slow steps", lambda b: steady(1.5))]


@pytest.mark.parametrize("name, machine", MACHINES, ids=[m[0] for m in MACHINES])
@pytest.mark.parametrize("minutes", [0.2, 1.0, 5.0, 30.0])
def test_a_budget_run_stops_within_ten_percent_of_its_budget(name, machine, minutes):
    steps, seconds, lrs, _, length = simulate(minutes, machine(minutes))
    budget = 60 * minutes
    assert abs(seconds - budget) <= 0.1 * budget, (seconds, budget, length.plans[-3:])
    assert steps == length.total and len(length.plans) >= (2 if steps > 40 else 1)


@pytest.mark.parametrize("name, machine", MACHINES, ids=[m[0] for m in MACHINES])
def test_the_rate_never_steps_back_up_when_the_estimate_changes(name, machine):
    _, _, lrs, marked, length = simulate(2.0, machine(2.0), decay_at=[0.3, 0.6, 0.9])
    assert all(a >= b for a, b in zip(lrs, lrs[1:])), "the learning rate went back up"
    assert len(set(lrs)) == 4  # every decay happened
    assert len(marked) == len(set(marked)) == 5  # each of the 5 marks before the end, once
    if "steady" not in name and "slow steps" not in name:  # the estimate did change, so the hold was needed
        assert len({p.total for p in length.plans}) > 1


@pytest.mark.parametrize("check_s", [0.0, 30.0, 120.0])
def test_slow_checks_neither_shorten_the_plan_nor_come_at_once(check_s):
    """A run whose evaluations take minutes (the held-out views at 1008 x 756 on a CPU: 0.5 s a step, 120 s
    an evaluation and checkpoint, six marks, 15 minutes). Seen before the checks were left out of the step
    time: the first evaluation tripled the step time, the shorter plan put the next marks behind the
    current step, and four evaluations ran within 65 steps, leaving 611 steps of the 1500 the budget had
    room for."""
    minutes, step_s, end_s, marks = 15.0, 0.5, 130.0, 6
    steps, seconds, _, marked, length = simulate(minutes, steady(step_s), end_s=end_s, marks=marks,
                                                 check_s=check_s)
    budget = 60 * minutes
    assert abs(seconds - budget) <= 0.1 * budget, (seconds, length.plans[-3:])
    room = (budget - end_s - (marks - 1) * check_s) / step_s  # steps the budget has room for
    assert steps >= 0.9 * room, (steps, room)
    assert len(marked) == marks - 1
    for k, step in enumerate(marked, 1):  # each mark near its fraction of the run, not bunched together
        assert abs(step / steps - k / marks) <= 0.05, (marked, steps)


def test_marks_ahead_counts_the_marks_after_the_progress():
    assert [marks_ahead(p, 6) for p in (0.0, 0.1, 1 / 6, 0.5, 5 / 6, 0.99, 1.0)] == [5, 5, 4, 2, 0, 0, 0]
    assert marks_ahead(0.3, 0) == marks_ahead(0.3, 1) == 0


def test_a_budget_spent_before_training_ends_the_run_at_once():
    steps, _, lrs, _, length = simulate(0.05, steady(0.05), setup_s=10.0)
    assert steps == 0 and lrs == [] and length.total == 0


@settings(max_examples=40, deadline=None)
@given(b1=st.floats(0.05, 4.0), more=st.floats(0.0, 4.0), step_s=st.floats(0.05, 2.0),
       end_s=st.floats(0.0, 5.0), decay_at=st.lists(st.floats(0.01, 1.0), max_size=3))
def test_the_schedule_is_monotone_in_the_budget(b1, more, step_s, end_s, decay_at):
    b2 = b1 + more
    n1, _, lr1, marks1, len1 = simulate(b1, steady(step_s), end_s=end_s, decay_at=decay_at)
    n2, _, lr2, marks2, len2 = simulate(b2, steady(step_s), end_s=end_s, decay_at=decay_at)
    assert n2 >= n1
    assert all(a >= b for a, b in zip(lr2, lr1)), "a longer budget decayed earlier"
    # each decay falls at its fraction of the run (one before the first estimate, at the estimate)
    for n, lrs, length in ((n1, lr1, len1), (n2, lr2, len2)):
        first_plan = length.plans[0].step / max(1, length.plans[0].total)
        for f in decay_at:
            first_low = next((s for s, lr in enumerate(lrs) if lr <= decay_factor(f, decay_at, 0.1)), n)
            assert first_low == n or abs(first_low / n - max(f, first_plan)) <= 1 / n + 1e-9, (first_low, n, f)
    assert all(a >= b for a, b in zip(marks2, marks1)) and len(marks2) >= min(len(marks1), 5)


def test_a_cancelled_budget_run_resumed_keeps_its_budget_and_its_progress():
    """Stopped after 40 % of its 1-minute budget and resumed with the checkpoint's spent time and progress:
    the two sessions together last the budget, and the rate does not step back up at the resume."""
    machine = noisy(0.05, 7)
    steps, now, lrs, _, length = simulate(1.0, machine, decay_at=[0.2, 0.5], stop_at=24.0)
    spent, floor = length.spent_at(now), length.progress_at(steps)
    steps2, seconds2, lrs2, _, _ = simulate(1.0, machine, decay_at=[0.2, 0.5], spent_s=spent, floor=floor,
                                            first_step=steps)
    assert abs(spent + seconds2 - 60) <= 6
    assert all(a >= b for a, b in zip(lrs + lrs2, (lrs + lrs2)[1:]))


def test_marks_and_decays_of_a_step_run_fall_on_the_steps_integer_arithmetic_gives():
    for n in (1, 2, 5, 7, 12, 150, 1199, 1200):
        length = StepLength(n)
        for count in range(0, 9):
            got = [s for s in range(1, n) if crossed_mark(length.progress_at(s - 1), length.progress_at(s), count)]
            want = sorted({-(-k * n // count) for k in range(1, count)} & set(range(1, n)))
            assert got == want, (n, count, got, want)


@pytest.mark.parametrize("steps, every", [(1200, 1000), (6000, 1000), (24, 8), (150, 50), (10, 3), (7, 7)])
def test_old_decay_every_maps_to_the_same_decays(steps, every):
    points = config_mod.legacy_decay_points(every, steps)
    for s in range(steps):
        assert decay_factor(s / steps, points, 0.1) == pytest.approx(0.1 ** (s // every)), s


def test_an_old_config_file_with_decay_every_is_read(tmp_path):
    raw = config_mod.to_dict(tiny_config())
    del raw["train"]["decay_at"]
    raw["train"].update(decay_every=1000, steps=6000)
    assert config_mod.from_dict(raw).train.decay_at == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    raw["train"]["decay_every"] = 0
    assert config_mod.from_dict(raw).train.decay_at == pytest.approx([1 / 3, 2 / 3])
    raw["train"]["decay_at"] = [0.5]
    with pytest.raises(ConfigError, match="decay_every .*and decay_at are both given"):
        config_mod.from_dict(raw, source="old.toml")


@pytest.mark.parametrize("value, match", [([0.0], "train.decay_at"), ([1.5], "train.decay_at"),
                                          ("0.5", "decay_at: expected list"), ([True], "expected list")])
def test_bad_decay_points_are_refused_by_name(value, match):
    raw = config_mod.to_dict(tiny_config())
    raw["train"]["decay_at"] = value
    with pytest.raises(ConfigError, match=match):
        config_mod.from_dict(raw)


def test_fast_preset_decays_once_at_five_sixths_whatever_the_steps():
    cfg = config_mod.preset("fast")
    for steps in (1200, 2400, 6000):
        decays = [s for s in range(1, steps) if decay_factor(s / steps, cfg.train.decay_at, 0.1)
                  < decay_factor((s - 1) / steps, cfg.train.decay_at, 0.1)]
        assert decays == [steps * 5 // 6]


def test_minutes_and_steps_flags(capsys, tmp_path):
    base = ["train", str(DEMO_SCENE), "--preset", "tiny", "--no-eval", "--quiet", "--out", str(tmp_path / "r")]
    assert main(base + ["--minutes", "1", "--steps", "10"]) == 2
    assert "--steps 10 and --minutes" in capsys.readouterr().err
    assert main(base + ["--minutes", "0.01"]) == 2
    assert "train.minutes must be 0" in capsys.readouterr().err
    assert main(base + ["--minutes", "-1"]) == 2
    assert "train.minutes must be 0" in capsys.readouterr().err
    budget_config = tmp_path / "b.toml"
    config_mod.save(tiny_config(minutes=2.0), budget_config)
    assert main(["train", "--config", str(budget_config), "--steps", "3", "--no-eval", "--quiet"]) == 2
    assert "add --minutes 0 to train 3 steps" in capsys.readouterr().err


def events_of(run, kind):
    return [e for e in read_events(run / "events.jsonl") if e["kind"] == kind]


def test_a_real_budget_run_ends_on_time_and_records_its_steps(tmp_path):
    """The tiny preset for 0.4 minutes, timed from the trainer's creation to the end of its final
    evaluation (on a machine other jobs share: the re-estimates follow its load)."""
    run = tmp_path / "run"
    began = time.monotonic()
    result = Trainer(tiny_config(minutes=0.4, evals=3, checkpoint_every=0, checkpoints=3), run,
                     started=began).train()
    seconds = time.monotonic() - began
    plans = events_of(run, "budget")
    # 10 % (the simulations hold to it), plus one step or one end on a loaded machine (seconds each there)
    grain = max(max(p["step_s"] for p in plans), plans[-1]["reserve_s"])
    assert abs(seconds - 24.0) <= 2.4 + grain, (seconds, plans[-3:])
    saved = config_mod.load(run / "config.toml").train
    assert (saved.minutes, saved.steps) == (0.4, result.step)
    [done] = events_of(run, "done")
    assert done["budget_s"] == 24.0 and done["step"] == result.step >= 3
    assert plans[-1]["steps"] == result.step
    lrs = [e["lr"] for e in events_of(run, "progress")]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert len(events_of(run, "test_psnr")) <= 3  # two checks at 1/3 and 2/3 (when the run got there) + the end
    # resumed as it is, the budget is spent: nothing more is trained
    again = Trainer(config_mod.load(run / "config.toml"), run).train()
    assert again.step == result.step


def test_a_stopped_budget_run_resumes_with_what_is_left(tmp_path):
    """Stopped after 6 steps of a 1-minute budget, then again 3 steps into the resume: each checkpoint
    holds the budget time spent so far, the resume counts it and keeps the progress reached (the sessions
    together are timed in the simulations above)."""
    run = tmp_path / "run"
    cfg = tiny_config(minutes=1.0, checkpoint_every=0)
    holder = {}
    first = Trainer(cfg, run, should_stop=lambda: holder["t"].step >= 6)
    holder["t"] = first
    assert first.train().cancelled and first.step == 6
    resumed = Trainer(config_mod.load(run / "config.toml"), run, should_stop=lambda: holder["t"].step >= 9)
    holder["t"] = resumed
    saved = resumed.saved_budget
    assert saved["minutes"] == 1.0 and 0 < saved["spent_s"] < 60
    assert resumed.length.spent_s == saved["spent_s"] and resumed.length.floor == saved["progress"]
    assert resumed.length.deadline == pytest.approx(resumed.started + 60 - saved["spent_s"])
    second = resumed.train()
    assert second.step == 9 if second.cancelled else second.step <= 9  # (a loaded machine may plan fewer)
    again = Trainer(config_mod.load(run / "config.toml"), run)
    assert again.saved_budget["spent_s"] > saved["spent_s"] and again.length.floor >= saved["progress"]
    lrs = [e["lr"] for e in events_of(run, "progress")]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_resume_warnings_say_what_a_new_length_does_to_the_schedule():
    from nex_core.training.resume import schedule_warning

    old, longer = tiny_config(steps=1200, decay_at=[5 / 6]), tiny_config(steps=2400, decay_at=[5 / 6])
    message = schedule_warning(old, longer, reached=1200)
    assert "step back up from x0.1 to x1" in message and "steps 2000 now" in message
    assert schedule_warning(old, longer, reached=600) is None  # not yet past the decay: nothing steps up
    assert schedule_warning(old, old, reached=1200) is None
    one, two = tiny_config(minutes=1.0), tiny_config(minutes=2.0)
    assert "planned again for 2 minutes (it was 1 minutes)" in schedule_warning(one, two, reached=50)
    assert schedule_warning(two, two, reached=50) is None
    assert "(it was 150 steps)" in schedule_warning(tiny_config(), two, reached=50)


def test_a_budget_spent_by_the_setup_trains_nothing_and_says_so(tmp_path):
    run = tmp_path / "run"
    result = Trainer(tiny_config(minutes=0.05), run, started=time.monotonic() - 10.0).train()
    assert result.step == 0 and not result.cancelled
    [warning] = [e["message"] for e in events_of(run, "warning")]
    assert "a budget of 0.05 min is too short here" in warning and "give more --minutes" in warning
    assert events_of(run, "budget")[0]["steps"] == 0


def _fake_trainer(minutes: float, evals: int, eval_s: float | None, budget: bool = True):
    from types import SimpleNamespace

    length = SimpleNamespace(is_budget=budget, progress_at=lambda step: 0.0)
    return SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(minutes=minutes, evals=evals, checkpoints=0)),
                           length=length, step=0, eval_s=eval_s, preview_s=None, checkpoint_s=0.0,
                           scene=SimpleNamespace(test_ids=[0, 8, 16]))


def test_a_budget_run_makes_fewer_evaluations_where_they_would_take_over_their_share():
    """At 1008 x 756 on a 2-core CPU an evaluation takes about 100 s: six of them were two thirds of a
    15-minute budget. Now they take at most EVAL_SHARE of it (the final one always), and a step run keeps
    train.evals."""
    from nex_core.training.loop import EVAL_SHARE, checks_reserve, eval_count

    assert eval_count(_fake_trainer(15.0, 6, 100.0)) == 1
    assert eval_count(_fake_trainer(60.0, 6, 100.0)) == int(EVAL_SHARE * 3600 / 100.0) == 5
    assert eval_count(_fake_trainer(60.0, 6, 1.0)) == 6  # cheap evaluations: all of them
    assert eval_count(_fake_trainer(1.0, 6, 100.0, budget=False)) == 6  # a step run: as configured
    assert eval_count(_fake_trainer(15.0, 0, 100.0)) == 0
    trainer = _fake_trainer(60.0, 6, 100.0)
    assert eval_count(trainer) == 5
    trainer.eval_s = 20.0  # a faster evaluation later does not bring marks back
    assert eval_count(trainer) == 5
    assert checks_reserve(trainer) == 4 * 20.0  # the marks ahead of the capped count
