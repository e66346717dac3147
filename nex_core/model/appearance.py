"""Per-training-photo colour compensation: an affine colour transform per training image, in training only.

Photos of one capture differ in exposure and white balance; without compensation the model learns those
differences as view-dependent colour, which is wrong at every other view. With ``train.appearance =
"affine"`` each training image ``i`` gets ``c' = c + D_i (c - 0.5) + b_i`` applied to the rendered colour
``c``: a 3x3 matrix and a bias, an affine map in the model's output space, as the per-image affine colour of
NeRF-W-style appearance models and the "colour-corrected" evaluation of Mip-NeRF 360 style works. The space is
sRGB-encoded, so a linear-light exposure gain is only approximately affine there; over +-1 EV the affine
fit is close, and it also covers white balance and a black-level shift.

Keeping the scene's real colour: the transforms are centred, ``D_i = R_i - mean_j R_j`` and ``b_i = r_i -
mean_j r_j`` over the raw parameters ``R, r``, so their mean is exactly the identity. Without this a
common part of every transform could move into (or out of) the scene's colours; with it the scene takes
the capture's average appearance, which is also the best guess for a held-out photo whose own transform is
unknown. (Fixing the reference view to identity would tie the scene to one arbitrary photo instead.)
An L2 penalty ``weight * mean_i (|D_i|^2 + |b_i|^2)`` pulls each photo towards identity, so that only
image-wide colour changes the data supports are absorbed. The bake and every renderer use the model alone,
i.e. the identity. The training photos alone do not decide how a photo's colour splits between its
transform and the scene's view dependence (NeX's learned basis can fit a per-photo gain as well); what
the split comes to in practice is measured in docs/benchmarks.md.
"""

from __future__ import annotations

import torch
from torch import nn

from ..io.config import TrainConfig

Tensor = torch.Tensor
KINDS = ("off", "affine")
# The matrix acts on the colour minus mid-grey: a gain then barely moves the mean colour, so the gain's and
# the bias's gradients are nearly uncorrelated (about c = 0 they point almost the same way, which slows
# their optimisation). The same family of transforms either way.
PIVOT = 0.5


class AppearanceTransform(nn.Module):
    """One centred affine colour transform per training image; with ``kind="off"`` the identity, without
    parameters (so its state dict is empty and old checkpoints match it)."""

    def __init__(self, n_images: int, kind: str = "off", weight: float = 0.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"appearance kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.weight = float(weight)
        if kind == "affine":
            self.matrix = nn.Parameter(torch.zeros(n_images, 3, 3))
            self.bias = nn.Parameter(torch.zeros(n_images, 3))

    @classmethod
    def from_config(cls, train: TrainConfig, n_images: int) -> AppearanceTransform:
        """The transforms ``train.appearance`` and ``train.appearance_weight`` ask for, for ``n_images``."""
        return cls(n_images, train.appearance, train.appearance_weight)

    @property
    def enabled(self) -> bool:
        return self.kind != "off"

    def transforms(self) -> tuple[Tensor, Tensor]:
        """The centred (D [N, 3, 3], b [N, 3]): the transform of image i is ``c -> c + D_i (c - p) + b_i``
        with the pivot ``p = PIVOT`` (mid-grey)."""
        if not self.enabled:
            raise RuntimeError("appearance compensation is off: there are no transforms")
        return self.matrix - self.matrix.mean(0), self.bias - self.bias.mean(0)

    def gains_and_biases(self) -> tuple[Tensor, Tensor]:
        """Each transform as ``c -> A_i c + t_i``: A [N, 3, 3] and t [N, 3], detached (for reports and tests)."""
        d, b = (x.detach() for x in self.transforms())
        return torch.eye(3, device=d.device) + d, b - d.sum(2) * PIVOT

    def forward(self, colour: Tensor, image_index: Tensor) -> Tensor:
        """Apply image ``image_index[r]``'s transform to ``colour[r]`` ([R, 3] -> [R, 3]), in float32
        (outside autocast: a bf16 matrix product would cost more precision than the colours have)."""
        if not self.enabled:
            return colour
        with torch.autocast(colour.device.type, enabled=False):
            d, b = self.transforms()
            c = colour.float()
            return c + torch.einsum("rij,rj->ri", d[image_index], c - PIVOT) + b[image_index]

    def regulariser(self) -> Tensor | float:
        """``weight * mean_i (|D_i|^2 + |b_i|^2)``; 0 when off."""
        if not self.enabled or not self.weight:
            return 0.0
        d, b = self.transforms()
        return self.weight * (d.square().sum((1, 2)) + b.square().sum(1)).mean()

    def load_from_checkpoint(self, data: dict) -> None:
        """Load the ``"appearance"`` entry of a checkpoint; one written before this existed (or with
        compensation off) has none and leaves the identity."""
        state = data.get("appearance") or {}
        if self.enabled and state:
            self.load_state_dict(state)


def parameter_group(appearance: AppearanceTransform, lr: float) -> list[dict]:
    """The optimiser group of the transforms (none when off)."""
    if not appearance.enabled:
        return []
    return [{"params": list(appearance.parameters()), "lr": lr, "name": "appearance", "base_lr": lr}]
