"""The panels and preferences draw in every job state (with a recording stand-in for the layout: in
background mode Blender draws no UI)."""

from __future__ import annotations

from unittest import mock

import pytest

from addon_helpers import ADDON_MODULE


class _Panel:
    def __init__(self, cls, target=None):
        self.layout = mock.MagicMock(name="layout")
        self._cls, self._target = cls, target

    def __getattr__(self, name):
        if self._target is not None and hasattr(self._target, name):
            return getattr(self._target, name)
        return getattr(self._cls, name)


def _labels(layout) -> str:
    return " ".join(str(c) for c in layout.mock_calls)


@pytest.mark.smoke  # torch-free; checks the stored enum numbers in the LTS Blenders too
def test_panels_draw_in_every_state(scene, addon, bpy_module):
    bpy = bpy_module
    ui = addon.ui
    job = scene.nex.job
    states = [dict(kind=""),
              dict(kind="train", running=True, phase="train", progress=40.0, step=60, steps=150, loss=0.01,
                   psnr=21.0, eta_s=12.0, message="checkpoint at step 50", preview_path="/nonexistent.png"),
              dict(kind="train", running=False, phase="failed", error="the background Python has no PyTorch " * 3,
                   log_path="/tmp/train.log"),
              dict(kind="prepare", running=True, phase="matching", progress=45.0, step=3, steps=10)]
    for state in states:
        for key, value in state.items():
            setattr(job, key, value)
        panel = _Panel(ui.NEX_PT_main)
        ui.NEX_PT_main.draw(panel, bpy.context)
        text = _labels(panel.layout)
        if state.get("error"):
            assert "ERROR" in text and "PyTorch" in text
        if state.get("running"):
            assert "progress" in text
    scene.nex.preset, scene.nex.steps = "tiny", 300
    assert scene.nex.effective_summary() == "4 x 2 = 8 planes, 300 steps, 80 px wide"
    scene.nex.minutes = 2.5  # a time budget replaces the steps (the Steps field goes inactive)
    assert scene.nex.effective_summary() == "4 x 2 = 8 planes, 2.5 min, 80 px wide"
    panel = _Panel(ui.NEX_PT_main)
    ui.NEX_PT_main.draw(panel, bpy.context)
    assert "'minutes'" in _labels(panel.layout)
    scene.nex.minutes = 0.0
    assert scene.nex.network == "AUTO" and scene.nex.field_flag() is None  # the preset's choice
    for network, flag, summary in (("MLP", "mlp", ", MLP network"), ("GRID", "grid", ", grid network")):
        scene.nex.network = network
        assert scene.nex.field_flag() == flag and scene.nex.effective_summary().endswith(summary)
    # A .blend stores the number: files saved before Automatic existed hold MLP as 0 and Grid as 1.
    numbers = {item.identifier: item.value for item in scene.nex.bl_rna.properties["network"].enum_items}
    assert numbers == {"AUTO": 2, "MLP": 0, "GRID": 1}
    scene.nex.network = "AUTO"
    panel = _Panel(ui.NEX_PT_dataset)
    ui.NEX_PT_dataset.draw(panel, bpy.context)
    assert "render_dataset" in _labels(panel.layout)


def test_mpi_panel_and_preferences_draw(scene, addon, bpy_module, trained_run):
    bpy = bpy_module
    assert bpy.ops.nex.import_mpi(directory=str(trained_run["baked_dir"])) == {"FINISHED"}
    assert addon.ui.NEX_PT_mpi_object.poll(bpy.context)
    panel = _Panel(addon.ui.NEX_PT_mpi_object)
    addon.ui.NEX_PT_mpi_object.draw(panel, bpy.context)
    assert "planes" in _labels(panel.layout)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    panel = _Panel(type(prefs), prefs)
    type(prefs).draw(panel, bpy.context)
    assert "Create Environment" in _labels(panel.layout) or "create_environment" in _labels(panel.layout)


def test_train_with_minutes_starts_a_budget_job(scene, addon, bpy_module, tmp_path):
    from addon_helpers import DEMO_SCENE

    started = []
    scene.nex.scene_dir, scene.nex.run_dir = str(DEMO_SCENE), str(tmp_path / "run")
    scene.nex.steps, scene.nex.minutes = 300, 1.5
    fake_start = lambda op, ctx, spec, **kw: started.append(spec) or {"FINISHED"}  # noqa: E731
    with mock.patch.object(addon.operators, "_start_job", fake_start):
        assert bpy_module.ops.nex.train() == {"FINISHED"}
    [spec] = started
    assert (spec.minutes, spec.steps) == (1.5, 0) and spec.args()[-3:] == ["--minutes", "1.5", "--no-eval"]
