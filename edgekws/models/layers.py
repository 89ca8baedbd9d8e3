"""Plain layers shared by the families (no dynamic width: the supernet and its extracted subnets
use the same module).

`InputNorm` normalises the log-mel input per clip, inside the model, so an export carries it as
two or three ops of its graph (MEAN, SUB) and a firmware port's frontend stays the one in
`frontend.json`. Why: a deployed microphone, codec or speaker colours the spectrum differently
from the training voices, and in log-mel a fixed colouring is an additive offset per mel band.
The modes are described in `edgekws.models.input_norm`; their measured effect on speech from an
unheard engine is in the README (Stage 3, `edgekws loeo`).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekws.models.input_norm import check_input_norm


class InputNorm(nn.Module):
    """(B, frames, n_mels) → the same shape, normalised per clip (see `edgekws.models.input_norm`)."""

    def __init__(self, mode: str = "none"):
        super().__init__()
        check_input_norm(mode)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        band = x.mean(dim=1, keepdim=True)  # (B, 1, n_mels): each band's mean over time
        if self.mode == "spectral_shape":
            band = band - band.mean(dim=2, keepdim=True)  # keep the clip's overall level
        return x - band

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
