"""How an imported MPI's colours meet Blender's: the advice the import gives for the MPI's compositing
space and the chosen colour mode, and the render settings under which its pixels come out exactly as
nex_core renders them. Torch- and bpy-free.

Blender over-composites the planes in linear light. With *Scene-Linear Colour* on, the node decodes each
plane's (sRGB-encoded) colour first, so Blender composites exactly as an MPI trained with
``--compositing linear`` was trained; an MPI trained the reference's way (``srgb``) then differs where
half-transparent planes overlap. With it off (and the Raw view), Blender composites the encoded values:
exact for ``srgb`` MPIs, wrong for ``linear`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass

OPAQUE_ENOUGH = 0.9  # below this mean opacity, mixing in the other space visibly changes the picture


def colour_mode_advice(compositing: str, linear_output: bool, opacity: float | None) -> str | None:
    """A warning for an import whose colour mode composites in another space than the MPI was trained in,
    or None when Blender will composite exactly as training did (or the difference cannot show)."""
    if compositing == "linear" and not linear_output:
        return ("this MPI was trained compositing in linear light, but Scene-Linear Colour is off: Blender "
                "will mix its planes' display values instead; import it with Scene-Linear Colour on (and the "
                "Standard view transform)")
    if compositing == "srgb" and linear_output and opacity is not None and opacity < OPAQUE_ENOUGH:
        return (f"this MPI is only {100 * opacity:.0f}% opaque on average and was trained mixing its planes in "
                "sRGB values, where Blender mixes in linear light: it will look different from NeX's own render. "
                "Train with `--compositing linear` for an MPI that renders exactly here, or import this one with "
                "Scene-Linear Colour off and use the Raw view transform")
    return None


def exact_in_blender(compositing: str, linear_output: bool) -> bool:
    """Whether Blender composites this MPI's planes exactly as training did."""
    return (compositing == "linear") == bool(linear_output)


@dataclass(frozen=True)
class RenderSetting:
    """One render setting the MPI needs for exact pixels: where it lives, the value, and why."""

    engine: str  # "CYCLES", "EEVEE" or "ANY"
    path: str  # attribute path from the scene, e.g. "cycles.filter_width"
    value: object
    why: str


def exact_render_settings(n_planes: int, bounce_margin: int) -> list[RenderSetting]:
    """The settings under which a render of the MPI equals nex_core's (the numpy reference renders one
    ray through each pixel's centre): a point-like pixel filter, enough transparent bounces that no ray
    stops inside the stack, no path termination by Russian roulette among the planes, and no denoiser."""
    return [
        RenderSetting("CYCLES", "cycles.filter_width", 0.01,
                      "Blender's default 1.5-pixel filter blurs each pixel with its neighbours; 0.01 samples the "
                      "pixel centre as nex_core does"),
        RenderSetting("CYCLES", "cycles.transparent_max_bounces", n_planes + bounce_margin,
                      "every plane is a transparent bounce: fewer than the planes render far planes black"),
        RenderSetting("CYCLES", "cycles.min_transparent_bounces", n_planes,
                      "below this many transparent bounces no path ends early, so one sample composites the "
                      "stack without noise"),
        RenderSetting("CYCLES", "cycles.use_denoising", False,
                      "with the settings above one sample composites the stack without noise, and a denoiser "
                      "only smooths the MPI's texels"),
        RenderSetting("EEVEE", "render.filter_size", 0.0,
                      "EEVEE's default 1.5-pixel reconstruction filter blurs the MPI's pixels"),
    ]


def describe_settings(settings: list[RenderSetting]) -> str:
    """One line per setting for the import report: ``Cycles: cycles.filter_width = 0.01 (why)``."""
    label = {"CYCLES": "Cycles", "EEVEE": "EEVEE", "ANY": "Both"}
    return "\n".join(f"{label[s.engine]}: {s.path} = {s.value} ({s.why})" for s in settings)
