"""Dynamic ops: full-size weights, sliced at forward time. They live only inside supernets.

Following once-for-all, each op holds the weights of the widest subnet and, for the active
subnet, uses the leading slice (`weight[:out, :in]`): the first channels are shared by every
width, which is what makes a width-0.25 subnet a sub-tensor of the width-1.0 one. Input widths
are read from the input tensor; output widths are set explicitly by the supernet's
`set_active(spec)` — no globals, no flags read from inside the ops.

Extraction (`edgekws.extract`) copies the active slices into ordinary `nn` layers, so an
exported model never contains one of these classes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DynamicOp(nn.Module):
    """Marker base class: anything inheriting from it must not survive extraction."""


class DynamicConv2d(DynamicOp):
    """Conv2d whose output channels are `active_out` and input channels follow the input."""

    def __init__(self, in_max: int, out_max: int, kernel_size, stride=1, padding=0, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_max, out_max, kernel_size, stride, padding, bias=bias)
        self.active_out = out_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        w = c.weight[: self.active_out, : x.shape[1]]
        b = c.bias[: self.active_out] if c.bias is not None else None
        return F.conv2d(x, w, b, c.stride, c.padding)


class DynamicDepthwiseConv2d(DynamicOp):
    """Depthwise conv: as many channels as the input has (up to `channels_max`)."""

    def __init__(self, channels_max: int, kernel_size, stride=1, padding=0, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(channels_max, channels_max, kernel_size, stride, padding, groups=channels_max, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, n = self.conv, x.shape[1]
        b = c.bias[:n] if c.bias is not None else None
        return F.conv2d(x, c.weight[:n], b, c.stride, c.padding, groups=n)


class SwitchableBatchNorm2d(DynamicOp):
    """One BatchNorm per channel count the layer can see (slimmable networks' switchable BN).

    Sharing one set of statistics across widths is what makes naive slimmable networks collapse
    at small widths in eval mode: the running mean/variance of the first C channels differ when
    the rest of the network is narrower. A private BN per width avoids it.
    """

    def __init__(self, choices: Sequence[int]):
        super().__init__()
        self.choices = tuple(sorted(set(int(c) for c in choices)))
        self.bn = nn.ModuleList(nn.BatchNorm2d(c) for c in self.choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn[self.index(x.shape[1])](x)

    def index(self, channels: int) -> int:
        try:
            return self.choices.index(channels)
        except ValueError:
            raise RuntimeError(f"no BatchNorm for {channels} channels (have {self.choices})") from None


class DynamicLinear(DynamicOp):
    """Linear with `active_out` outputs; input features follow the input."""

    def __init__(self, in_max: int, out_max: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_max, out_max, bias=bias)
        self.active_out = out_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l = self.linear
        b = l.bias[: self.active_out] if l.bias is not None else None
        return F.linear(x, l.weight[: self.active_out, : x.shape[-1]], b)


class DynamicLayerNorm(DynamicOp):
    """LayerNorm over however many features the input has: statistics are per token over the
    active features, so the norm is exact at every width (no recalibration needed)."""

    def __init__(self, dim_max: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim_max, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        return F.layer_norm(x, (n,), self.norm.weight[:n], self.norm.bias[:n], self.norm.eps)
