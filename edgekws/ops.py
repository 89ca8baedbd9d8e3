"""Dynamic ops: full-size weights, sliced at forward time. They live only inside supernets.

Following once-for-all, each op holds the weights of the widest subnet and, for the active
subnet, uses the leading slice (`weight[:out, :in]`): the first channels are shared by every
width, which is what makes a width-0.25 subnet a sub-tensor of the width-1.0 one. Input channel
counts are read from the input tensor; output channels are set explicitly by the supernet's
`set_active(spec)` — no globals, no flags read from inside the ops.

Extraction (`edgekws.extract`) copies the active slices into ordinary `nn` layers, so an
exported model never contains one of these classes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init  # extracted layers are overwritten at once: no init, no RNG draw


class DynamicOp(nn.Module):
    """Base class: anything inheriting from it must not survive extraction. Each op turns its
    active slice into plain `nn` layers with `to_static(in_features)` (the once-for-all pattern),
    so a family's extraction is a composition of its ops' `to_static`, never index-based copying."""

    def to_static(self, in_features: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} has no to_static()")


@torch.no_grad()
def _with(layer: nn.Module, **tensors: torch.Tensor) -> nn.Module:
    """`layer` with its parameters and buffers overwritten by copies of `tensors`."""
    for name, value in tensors.items():
        getattr(layer, name).copy_(value)
    return layer


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

    def to_static(self, in_features: int) -> nn.Conv2d:
        c, out = self.conv, self.active_out
        layer = skip_init(nn.Conv2d, in_features, out, c.kernel_size, c.stride, c.padding, bias=c.bias is not None)
        extra = {"bias": c.bias[:out]} if c.bias is not None else {}
        return _with(layer, weight=c.weight[:out, :in_features], **extra)


class DynamicDepthwiseConv2d(DynamicOp):
    """Depthwise conv: as many channels as the input has (up to `channels_max`)."""

    def __init__(self, channels_max: int, kernel_size, stride=1, padding=0, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(channels_max, channels_max, kernel_size, stride, padding, groups=channels_max, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, n = self.conv, x.shape[1]
        b = c.bias[:n] if c.bias is not None else None
        return F.conv2d(x, c.weight[:n], b, c.stride, c.padding, groups=n)

    def to_static(self, in_features: int) -> nn.Conv2d:
        c, n = self.conv, in_features
        layer = skip_init(nn.Conv2d, n, n, c.kernel_size, c.stride, c.padding, groups=n, bias=c.bias is not None)
        extra = {"bias": c.bias[:n]} if c.bias is not None else {}
        return _with(layer, weight=c.weight[:n], **extra)


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

    def to_static(self, in_features: int) -> nn.BatchNorm2d:
        """A copy of the BatchNorm private to `in_features` channels (statistics included)."""
        src = self.bn[self.index(in_features)]
        layer = skip_init(nn.BatchNorm2d, in_features, src.eps, src.momentum)
        layer.load_state_dict(src.state_dict())
        return layer

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

    def to_static(self, in_features: int) -> nn.Linear:
        l, out = self.linear, self.active_out
        layer = skip_init(nn.Linear, in_features, out, bias=l.bias is not None)
        extra = {"bias": l.bias[:out]} if l.bias is not None else {}
        return _with(layer, weight=l.weight[:out, :in_features], **extra)


class DynamicLayerNorm(DynamicOp):
    """LayerNorm over however many features the input has: statistics are per token over the
    active features, so the norm is exact at every width (no recalibration needed)."""

    def __init__(self, dim_max: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim_max, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        return F.layer_norm(x, (n,), self.norm.weight[:n], self.norm.bias[:n], self.norm.eps)

    def to_static(self, in_features: int) -> nn.LayerNorm:
        n = in_features
        return _with(skip_init(nn.LayerNorm, n, eps=self.norm.eps), weight=self.norm.weight[:n], bias=self.norm.bias[:n])
