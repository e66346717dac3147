"""``tools/bench_quality.py``'s matrix: which scenes, captures, settings and budgets, where each piece is
cached, and the commands that make them (suite renders, ``nex prepare``, ``nex train --minutes``,
``nex eval``). Every step is a child process, so one run's memory or crash cannot touch the next."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nex_core.io.config_ranges import TRAINED_FIELDS
from nex_core.io.events import last_event

REPO = Path(__file__).resolve().parents[2]
SHIPPED = "shiny_demo"  # the shipped scene (data/scenes/shiny_demo): clean capture only, it has no phone variant
CAPTURES = ("clean", "phone")
FIELDS = TRAINED_FIELDS  # a cell names the network it trains, never "auto" (machine-dependent)
APPEARANCES = ("off", "affine")


@dataclass(frozen=True)
class Setting:
    """One training configuration of the table: a preset, a field, the per-photo colour compensation and
    any further config entries (``nex train --set``). Every part is passed to ``nex train`` explicitly, so a
    cell means the same when nex train's defaults change: an unnamed appearance is ``off``."""

    preset: str
    field: str = "mlp"
    appearance: str = "off"
    overrides: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Setting":
        """``preset[:field[:appearance]][@key=value+key=value...]``, e.g. ``fast``, ``fast:grid``,
        ``fast:mlp:affine``, ``fast:grid@model.grid_max=64+train.lr_grid=0.005``."""
        head, _, tail = text.partition("@")
        parts = head.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValueError(f"setting {text!r}: write preset[:field[:appearance]][@key=value+...], e.g. fast:grid")
        preset, field, appearance = (parts + ["mlp", "off"][len(parts) - 1:])[:3]
        if preset not in ("tiny", "fast", "paper"):
            raise ValueError(f"setting {text!r}: preset must be tiny, fast or paper")
        if field not in FIELDS:
            raise ValueError(f"setting {text!r}: field must be one of {', '.join(FIELDS)}")
        if appearance not in APPEARANCES:
            raise ValueError(f"setting {text!r}: appearance must be one of {', '.join(APPEARANCES)}")
        overrides = tuple(o for o in tail.split("+") if o) if tail else ()
        for o in overrides:
            key, eq, _ = o.partition("=")
            if not eq or key.count(".") != 1 or key.split(".")[0] not in ("data", "model", "train"):
                raise ValueError(f"setting {text!r}: {o!r} is not SECTION.KEY=VALUE (data, model or train)")
        return cls(preset, field, appearance, overrides)

    @property
    def label(self) -> str:
        extra = ", ".join(o.split(".", 1)[1] for o in self.overrides)
        return self.preset + ("" if self.field == "mlp" else f" {self.field}") + (
            "" if self.appearance == "off" else f" +{self.appearance}") + (f" ({extra})" if extra else "")

    @property
    def slug(self) -> str:
        """The setting in a file name: the overrides as a short hash."""
        tag = hashlib.sha256("+".join(self.overrides).encode()).hexdigest()[:6] if self.overrides else "plain"
        return f"{self.preset}-{self.field}-{self.appearance}-{tag}"

    def train_flags(self) -> list[str]:
        flags = ["--preset", self.preset, "--field", self.field, "--appearance", self.appearance]
        for o in self.overrides:
            flags += ["--set", o]
        return flags


@dataclass(frozen=True)
class Case:
    """One cell of the table: a scene in one capture, trained with one setting for a number of minutes."""

    scene: str
    capture: str
    setting: Setting
    minutes: float

    def key(self, code: str) -> str:
        return f"{self.scene}-{self.capture}-{self.setting.slug}-{self.minutes:g}min-{code}"


def code_hash() -> str:
    """sha256 over nex_core's sources (first 10 hex digits): a result is reused only for the same code."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "nex_core").rglob("*")):
        if path.suffix in (".py", ".toml", ".glsl", ".js", ".html") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def run(cmd: list[str], what: str, log: Path, timeout: float) -> float:
    """Run ``cmd`` with its output going to ``log``; returns its wall time; raises RuntimeError on failure
    naming ``what``, the log and its tail."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-12:])
        raise RuntimeError(f"{what} failed ({'timed out' if code == 'timeout' else f'exit {code}'}): "
                           f"{' '.join(cmd)}\nlog: {log}\n{tail}")
    return time.perf_counter() - start


def nex(*args: str) -> list[str]:
    return [sys.executable, "-m", "nex_core.cli", *args]


@dataclass
class SceneRequest:
    """How the suite scenes are rendered (their cache key is the scene_suite tool's own)."""

    width: int = 160
    height: int = 120
    views: int = 20
    samples: int = 32
    seed: int = 0


def suite_render(scene: str, phone: bool, req: SceneRequest, log: Path) -> Path:
    """The suite scene's folder (rendered now, or the scene_suite cache's copy)."""
    cmd = [sys.executable, str(REPO / "tools" / "scene_suite.py"), "render", "--scene", scene, "--size",
           str(req.width), str(req.height), "--views", str(req.views), "--samples", str(req.samples), "--seed",
           str(req.seed), *(["--phone"] if phone else [])]
    run(cmd, f"rendering {scene} ({'phone' if phone else 'clean'})", log, timeout=3600)
    return Path(log.read_text().strip().splitlines()[-1])


def prepare_fingerprint() -> str:
    """A short hash of ``nex prepare``'s code: a cached prepared scene is reused only by the code that made it."""
    digest = hashlib.sha1()
    for path in sorted((REPO / "nex_core" / "sfm").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def training_scene(scene: str, capture: str, req: SceneRequest, work: Path) -> Path:
    """The folder ``nex train`` reads for ``scene`` in ``capture``: the shipped scene, a suite render with
    its exact poses, or ``nex prepare`` of a phone-like capture (cached in ``work/prepared``)."""
    if scene == SHIPPED:
        if capture != "clean":
            raise ValueError(f"{SHIPPED} has no phone-like capture: use the suite scenes for --captures phone")
        return REPO / "data" / "scenes" / SHIPPED
    logs = work / "logs"
    folder = suite_render(scene, capture == "phone", req, logs / f"render-{scene}-{capture}.log")
    if capture == "clean":
        return folder
    prepared = work / "prepared" / f"{folder.name}-w{req.width}-{prepare_fingerprint()}"
    if not (prepared / "prepare_report.json").is_file():
        run(nex("prepare", str(folder / "photos"), "--out", str(prepared), "--width", str(req.width), "--force",
                "--quiet"), f"nex prepare of {folder / 'photos'}", logs / f"prepare-{scene}.log", timeout=3600)
    return prepared


def train_and_evaluate(case: Case, scene_dir: Path, run_dir: Path, log_dir: Path) -> dict:
    """``nex train --minutes`` then ``nex eval``; returns the cell's figures."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    load_before = os.getloadavg()[0]
    train_s = run(nex("train", str(scene_dir), "--out", str(run_dir), *case.setting.train_flags(),
                      "--minutes", f"{case.minutes:g}", "--quiet"),
                  f"training {case.scene} ({case.capture}, {case.setting.label}, {case.minutes:g} min)",
                  log_dir / f"{run_dir.name}-train.log", timeout=case.minutes * 60 * 3 + 600)
    eval_s = run(nex("eval", str(run_dir), "--no-lpips"), f"evaluating {run_dir}", log_dir / f"{run_dir.name}-eval.log",
                 timeout=3600)
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    done = last_event(run_dir / "events.jsonl", "done") or {}
    return {"psnr": metrics["mean"]["psnr"], "ssim": metrics["mean"]["ssim"],
            "psnr_colour_fit": metrics["mean"].get("psnr_colour_fit"), "views": len(metrics["views"]),
            "steps": done.get("step"), "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
            "load_before": round(load_before, 2), "first_view": metrics["views"][0]["view"] if metrics["views"] else None}


def cached_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def store_result(path: Path, case: Case, figures: dict, code: str) -> dict:
    """Write one cell's result (atomically) and return it."""
    result = {"scene": case.scene, "capture": case.capture, "setting": {**asdict(case.setting),
                                                                        "overrides": list(case.setting.overrides)},
              "label": case.setting.label, "minutes": case.minutes, "code": code, **figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return result
