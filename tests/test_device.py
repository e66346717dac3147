"""Run setup without a trainer: device and precision choice (nex_core.runtime.device) and a run's scene,
geometry and checkpoint settings from its config (nex_core.runtime.setup)."""


import pytest
from support.configs import tiny_config
import torch

from nex_core.io import config as config_mod
from nex_core.io.errors import ConfigError
from nex_core.runtime import device as device_mod
from nex_core.runtime.device import (autocast_dtype, cpu_flags_and_vendor, is_out_of_memory,
                                     render_autocast_dtype, resolve_device)
from nex_core.runtime.setup import build_geometry, load_scene_for, model_settings


CPUINFO_SPR = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
CPUINFO_COOPER = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16\n"
CPUINFO_ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512f avx512_bf16\n"
CPUINFO_ARM = "processor\t: 0\nFeatures\t: fp asimd bf16\n"


@pytest.mark.parametrize("cpuinfo,native,want", [
    (CPUINFO_SPR, True, True), (CPUINFO_ZEN4, True, True), (CPUINFO_COOPER, True, False),
    (CPUINFO_ARM, True, True), (CPUINFO_SPR, False, False)])
def test_auto_precision_uses_bf16_only_where_it_is_faster(monkeypatch, cpuinfo, native, want):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    assert device_mod.cpu_prefers_bf16(cpuinfo) is want


def test_cpu_flags_are_read_from_the_first_processor():
    text = CPUINFO_ZEN4 + "\nprocessor\t: 1\nvendor_id\t: Other\nflags\t\t: sse\n"
    flags, vendor = cpu_flags_and_vendor(text)
    assert vendor == "AuthenticAMD" and "avx512_bf16" in flags and "sse" not in flags


@pytest.mark.parametrize("prefers,precision,want", [
    (True, "auto", torch.bfloat16), (False, "auto", None), (False, "bf16", torch.bfloat16),
    (True, "fp32", None)])
def test_cpu_autocast_follows_the_precision_setting(monkeypatch, prefers, precision, want):
    monkeypatch.setattr(device_mod, "cpu_prefers_bf16", lambda: prefers)
    cpu = torch.device("cpu")
    assert autocast_dtype(precision, cpu) is want
    assert render_autocast_dtype(precision, cpu) is None  # CPU renders stay fp32 whatever training uses


@pytest.mark.parametrize("native_bf16,device,precision,want", [
    (False, "cpu", "auto", "grid"),  # no bf16 path: the MLP trains in fp32 and the grid makes ~5x its steps
    (True, "cpu", "auto", "mlp"), (True, "cpu", "bf16", "mlp"),
    (True, "cpu", "fp32", "grid"),  # bf16 turned off: the MLP runs in fp32 as on a CPU without it
    (False, "cuda", "auto", "mlp"), (False, "cuda", "fp32", "mlp")])
def test_auto_field_is_the_grid_where_the_mlp_has_no_bf16_path(monkeypatch, native_bf16, device, precision, want):
    monkeypatch.setattr(device_mod, "cpu_prefers_bf16", lambda cpuinfo=None: native_bf16)
    assert device_mod.preferred_field(torch.device(device), precision) == want
    cfg = config_mod.preset("fast")
    cfg.train.precision = precision
    assert cfg.model.field == "auto"
    assert device_mod.resolve_field(cfg, torch.device(device)) == want and cfg.model.field == want
    assert device_mod.resolve_field(cfg, torch.device(device)) is None  # a given field stays
    config_mod.validate(cfg)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_out_of_memory_is_told_apart_from_other_errors():
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("anything"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))



def test_setup_builds_the_scene_and_geometry_from_the_config():
    cfg = tiny_config()
    scene = load_scene_for(cfg)
    ref = scene.cameras[scene.ref_id]
    assert ref.width == cfg.data.width and scene.test_ids and scene.ref_id in scene.train_ids
    geom = build_geometry(scene, cfg)
    assert geom.n_planes == cfg.model.layers * cfg.model.sublayers
    assert (geom.width, geom.height, geom.fx) == (ref.width, ref.height, ref.fx) and geom.offset > 0
    assert geom.depths == tuple(sorted(geom.depths))
    assert geom.depths[0] == pytest.approx(scene.planes.dmin) and geom.depths[-1] == pytest.approx(scene.planes.dmax)
    settings = model_settings(cfg, geom)
    assert settings["model"]["layers"] == cfg.model.layers
    assert settings["mpi"][:4] == [geom.width, geom.height, geom.offset, geom.n_planes]


def test_checkpoint_settings_change_with_the_geometry():
    cfg = tiny_config()
    geom = build_geometry(load_scene_for(cfg), cfg)
    wider = tiny_config()
    wider.data.offset = geom.offset + 2
    assert model_settings(wider, build_geometry(load_scene_for(wider), wider)) != model_settings(cfg, geom)


def test_setup_refuses_a_config_without_a_scene():
    with pytest.raises(ConfigError, match="no scene given"):
        load_scene_for(config_mod.preset("tiny"))
