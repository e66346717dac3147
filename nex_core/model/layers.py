"""Small building blocks of the networks: the plain MLP and F_theta's output heads."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


def make_mlp(n_in: int, hidden: int, n_hidden_layers: int, n_out: int, slope: float) -> nn.Sequential:
    """Linear(in, hidden) + n_hidden_layers x Linear(hidden, hidden) + Linear(hidden, out), leaky ReLU."""
    mods: list[nn.Module] = [nn.Linear(n_in, hidden), nn.LeakyReLU(slope)]
    for _ in range(n_hidden_layers):
        mods += [nn.Linear(hidden, hidden), nn.LeakyReLU(slope)]
    mods.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*mods)


def output_heads(last: nn.Linear, h: Tensor, sublayers: int) -> tuple[Tensor, Tensor]:
    """F_theta's last layer on hidden features h [D, R, C]: the alpha logit on every plane [D, R] and the
    coefficient columns only on each layer's first plane [L, R, 3N] (the only ones used)."""
    alpha_logit = F.linear(h, last.weight[:1], last.bias[:1])[..., 0]
    coeff = F.linear(h[::sublayers], last.weight[1:], last.bias[1:])
    return alpha_logit, coeff
