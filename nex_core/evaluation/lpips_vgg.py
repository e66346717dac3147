"""LPIPS v0.1 with the VGG16 trunk, written in plain torch (no torchvision, no ``lpips`` import).

This re-implements the network of Zhang et al. (2018), "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", as the ``lpips`` package builds it for ``lpips.LPIPS(net='vgg')``
(version 0.1), which is what the NeX reference reports:

1. scaling layer: ``(x - shift) / scale`` with the constants below, for inputs in ``[-1, 1]``;
2. torchvision's ``vgg16().features`` conv stack (same module indices, so torchvision's state-dict
   keys ``features.0.weight`` ... ``features.28.bias`` load directly), tapped after relu1_2,
   relu2_2, relu3_3, relu4_3 and relu5_3 (module indices 3, 8, 15, 22, 29);
3. per tap: unit-normalise each pixel's channel vector (``x / (||x|| + 1e-10)``), squared difference,
   a 1x1 bias-free "linear" conv to one channel (weights from the ``lpips`` package's
   ``weights/v0.1/vgg.pth``, keys ``lin{k}.model.1.weight``), spatial mean;
4. sum over the five taps.

Weights are never downloaded. The backbone comes from ``$NEX_LPIPS_VGG_WEIGHTS`` or torch hub's
cache (``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``); the linear layers from
``$NEX_LPIPS_LIN_WEIGHTS`` or the data file of an installed ``lpips`` package, located with
``importlib.util.find_spec`` without importing it (its import needs torchvision).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..io.errors import NexError

ENV_VGG_WEIGHTS = "NEX_LPIPS_VGG_WEIGHTS"
ENV_LIN_WEIGHTS = "NEX_LPIPS_LIN_WEIGHTS"
VGG16_FILENAME = "vgg16-397923af.pth"
LIN_RELATIVE_PATH = ("weights", "v0.1", "vgg.pth")

# LPIPS ScalingLayer constants (lpips/lpips.py); inputs are expected in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORMALIZE_EPS = 1e-10

# torchvision vgg16 configuration "D": channel counts, "M" = 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
TAP_INDICES = (3, 8, 15, 22, 29)  # outputs of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
MIN_SIDE = 16  # four max-pools before relu5_3: smaller images leave that tap empty


def make_vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (31 modules, conv 3x3 pad 1, ReLU, 2x2 max-pool)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers)


class VGG16Trunk(nn.Module):
    """The VGG16 conv stack; ``forward`` returns the five LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        self.features = make_vgg16_features()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features[: TAP_INDICES[-1] + 1]):
            x = layer(x)
            if i in TAP_INDICES:
                taps.append(x)
        return taps


class NetLinLayer(nn.Module):
    """LPIPS "linear" layer: dropout (inactive at eval) then a 1x1 bias-free conv to one channel.

    The dropout slot keeps the parameter key ``model.1.weight`` identical to the lpips package.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, stride=1, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_channels(x: torch.Tensor, eps: float = NORMALIZE_EPS) -> torch.Tensor:
    """Unit-normalise each pixel's channel vector: ``x / (||x||_2 + eps)``.

    Same value as lpips' ``normalize_tensor``; ``vector_norm`` has a zero (not NaN) gradient where a
    feature vector is all zero, which ReLU features can be.
    """
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + eps)


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 (VGG16) distance; ``forward(in0, in1)`` returns one distance per batch item.

    ``backbone_state``: torchvision vgg16 (or ``vgg16().features``) state dict. ``lin_state``: the
    lpips ``vgg.pth`` state dict (``lin{k}.model.1.weight``). A part given as ``None`` is loaded
    from the discovered weight files, or randomly initialised (seed torch yourself) when
    ``random_init`` is true. Parameters are frozen; the module is put in eval mode.
    """

    def __init__(
        self,
        backbone_state: Mapping[str, torch.Tensor] | None = None,
        lin_state: Mapping[str, torch.Tensor] | None = None,
        random_init: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.net = VGG16Trunk()
        for k, c in enumerate(TAP_CHANNELS):  # named lin0..lin4 as in lpips: same state-dict keys
            self.add_module(f"lin{k}", NetLinLayer(c))
        self._load_backbone(backbone_state, random_init)
        self._load_lins(lin_state, random_init)
        self.requires_grad_(False)
        self.eval()

    @property
    def lins(self) -> list[NetLinLayer]:
        """The five linear layers, in tap order."""
        return [getattr(self, f"lin{k}") for k in range(len(TAP_CHANNELS))]

    def _load_backbone(self, state: Mapping[str, torch.Tensor] | None, random_init: bool) -> None:
        source = "the given backbone state dict"
        if state is None:
            if random_init:
                return  # torch's default conv initialisation
            path = vgg_weights_path()
            state, source = load_weights_file(path, "VGG16 backbone"), str(path)
        try:
            self.net.features.load_state_dict(backbone_features_state(state))
        except RuntimeError as exc:
            raise NexError(f"{source} is not a torchvision vgg16 state dict: {exc}") from exc

    def _load_lins(self, state: Mapping[str, torch.Tensor] | None, random_init: bool) -> None:
        source = "the given linear-layer state dict"
        if state is None:
            if random_init:
                with torch.no_grad():
                    for lin in self.lins:  # LPIPS weights are non-negative
                        lin.model[1].weight.uniform_(0.0, 1.0)
                return
            path = lin_weights_path()
            state, source = load_weights_file(path, "LPIPS linear layers"), str(path)
        try:
            for k, lin in enumerate(self.lins):
                lin.model[1].weight.data.copy_(_lin_weight(state, k))
        except (KeyError, RuntimeError) as exc:
            raise NexError(f"{source} is not an lpips v0.1 vgg.pth state dict: {exc}") from exc

    def forward(self, in0: torch.Tensor, in1: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Distances [N] between image batches [N, 3, H, W] in [-1, 1] (in [0, 1] if ``normalize``)."""
        if in0.shape != in1.shape or in0.ndim != 4 or in0.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [N, 3, H, W] batches of one shape, got {tuple(in0.shape)} "
                             f"and {tuple(in1.shape)}")
        if min(in0.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"LPIPS (VGG) needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, "
                             f"got {in0.shape[-1]}x{in0.shape[-2]}")
        if normalize:
            in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        taps0 = self.net((in0 - self.shift) / self.scale)
        taps1 = self.net((in1 - self.shift) / self.scale)
        total = in0.new_zeros(in0.shape[0])
        for lin, f0, f1 in zip(self.lins, taps0, taps1):
            diff = (normalize_channels(f0) - normalize_channels(f1)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total


def backbone_features_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features`` part of a torchvision vgg16 state dict, keys without the ``features.`` prefix.

    Accepts the full model's dict (``features.*`` plus ``classifier.*``) or a ``features``-only one.
    """
    prefix = "features."
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def _lin_weight(state: Mapping[str, torch.Tensor], k: int) -> torch.Tensor:
    key = f"lin{k}.model.1.weight"
    if key not in state:
        raise KeyError(f"missing key {key!r}")
    weight = state[key]
    expected = (1, TAP_CHANNELS[k], 1, 1)
    if tuple(weight.shape) != expected:
        raise RuntimeError(f"{key} has shape {tuple(weight.shape)}, expected {expected}")
    return weight


def load_weights_file(path: Path | None, what: str) -> Mapping[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` on CPU; a :class:`NexError` naming the file otherwise."""
    if path is None or not path.is_file():
        raise NexError(f"LPIPS is unavailable: {lpips_status()[1]}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt/unpicklable files surface as many types
        raise NexError(f"Cannot read the {what} weights {path}: {exc}. Replace the file.") from exc
    if not isinstance(state, Mapping):
        raise NexError(f"The {what} weights {path} do not hold a state dict. Replace the file.")
    return state


def vgg_weights_path() -> Path:
    """Where the VGG16 backbone weights are looked for: ``$NEX_LPIPS_VGG_WEIGHTS`` or torch hub's cache."""
    env = os.environ.get(ENV_VGG_WEIGHTS)
    if env:
        return Path(env).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def lpips_package_dir() -> Path | None:
    """The installed ``lpips`` package's directory, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def lin_weights_path() -> Path | None:
    """Where the LPIPS linear weights are looked for: ``$NEX_LPIPS_LIN_WEIGHTS`` or the lpips package."""
    env = os.environ.get(ENV_LIN_WEIGHTS)
    if env:
        return Path(env).expanduser()
    pkg = lpips_package_dir()
    return None if pkg is None else pkg.joinpath(*LIN_RELATIVE_PATH)


def lpips_status() -> tuple[bool, str]:
    """(available, reason): whether both weight files exist, and if not which is missing and how to get it."""
    problems = []
    vgg = vgg_weights_path()
    if not vgg.is_file():
        if os.environ.get(ENV_VGG_WEIGHTS):
            problems.append(f"VGG16 backbone weights not found at {vgg} (set by ${ENV_VGG_WEIGHTS})")
        else:
            problems.append(
                f"VGG16 backbone weights not found at {vgg}; nothing is downloaded at run time: copy "
                f"torchvision's {VGG16_FILENAME} there (or set ${ENV_VGG_WEIGHTS} to its path)"
            )
    lin = lin_weights_path()
    if lin is None:
        problems.append(
            "LPIPS linear-layer weights not found: the lpips package is not installed; run "
            f"pip install 'nex-blender[metrics]' (or set ${ENV_LIN_WEIGHTS} to a copy of lpips' "
            "weights/v0.1/vgg.pth)"
        )
    elif not lin.is_file():
        how = f"set by ${ENV_LIN_WEIGHTS}" if os.environ.get(ENV_LIN_WEIGHTS) else "reinstall lpips"
        problems.append(f"LPIPS linear-layer weights not found at {lin} ({how})")
    if problems:
        return False, "; ".join(problems)
    return True, f"LPIPS (VGG, v0.1) weights: backbone {vgg}, linear layers {lin}"
