"""KWT: a small Keyword Transformer with slimmable embedding, heads and MLP, and elastic depth.

Berg et al., "Keyword Transformer: A Self-Attention Model for Keyword Spotting" (2021) treat each
log-mel frame as a token: a linear embedding, a learned class token and positional embedding,
pre-norm Transformer layers, and a linear head on the class token. edgekws keeps that shape at a
size that fits 250k parameters, and makes it slimmable in three ways:

- embedding dim D: heads = D / 16 (the head size is fixed, so narrowing D drops whole heads and a
  width-0.25 subnet is one head of the full model);
- MLP hidden width M, shared by all layers;
- depth: the first L layers run (TODM-style elastic depth).

LayerNorm is computed over the active features only, so it is exact at every width and needs no
recalibration.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from edgekws.models.kwt_arch import EMBED_CONV, KWTArch
from edgekws.models.layers import InputNorm
from edgekws.ops import DynamicLayerNorm, DynamicLinear
from edgekws.spec import SearchSpace, SubnetSpec


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention on (B, T, H·hd) tensors, written out so it lowers to
    plain MatMul/Softmax in ONNX and TFLite."""
    b, t, d = q.shape
    h = d // head_dim
    q, k, v = (x.reshape(b, t, h, head_dim).transpose(1, 2) for x in (q, k, v))
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out.transpose(1, 2).reshape(b, t, d)


class Attention(nn.Module):
    """Static multi-head self-attention from four plain Linear layers."""

    def __init__(self, dim: int, head_dim: int, layers: dict[str, nn.Linear] | None = None):
        super().__init__()
        self.head_dim = head_dim
        layers = layers or {name: nn.Linear(dim, dim) for name in ("q", "k", "v", "proj")}
        self.q, self.k, self.v, self.proj = (layers[name] for name in ("q", "k", "v", "proj"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(_attention(self.q(x), self.k(x), self.v(x), self.head_dim))

    def macs_of(self, x: torch.Tensor) -> int:
        """The two attention matmuls (the Linear layers are counted on their own)."""
        b, t, d = x.shape
        return 2 * b * t * t * d

    def activation_elems(self, x: torch.Tensor) -> int:
        """Live at the peak: input, q, k, v and one head's-worth of scores per head."""
        b, t, d = x.shape
        return 4 * b * t * d + b * (d // self.head_dim) * t * t


class ConvEmbed(nn.Module):
    """KWT's convolutional stem (`KWTArch.embed == "conv"`): two 3×3 convolutions with GELU, each
    stride 2 along frequency, on the (B, frames, mels) input; each frame's outputs, frequency-major
    and channel-minor (the NHWC order, so the lowering needs no transpose), are its token features.
    Its width is fixed, so the supernet and every subnet share it whole."""

    def __init__(self, channels: int):
        super().__init__()
        k, stride, pad = EMBED_CONV
        self.convs = nn.Sequential(nn.Conv2d(1, channels, k, stride, pad), nn.GELU(),
                                   nn.Conv2d(channels, channels, k, stride, pad), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x.unsqueeze(1)).permute(0, 2, 3, 1).flatten(2)


def _stem(arch: KWTArch) -> nn.Module:
    """What runs between the input normalisation and the linear embedding."""
    return ConvEmbed(arch.embed_channels) if arch.embed == "conv" else nn.Identity()


class Block(nn.Module):
    """Pre-norm Transformer layer: x + attn(LN(x)), then x + MLP(LN(x))."""

    keeps_input_alive = True  # the residual stream stays in memory across the block

    def __init__(self, dim: int, mlp_dim: int, head_dim: int, layers: dict[str, nn.Module] | None = None):
        """Built from sizes, or (extraction) from ready `layers` {norm1, attn, norm2, mlp}."""
        super().__init__()
        if layers is None:
            layers = {"norm1": nn.LayerNorm(dim), "attn": Attention(dim, head_dim), "norm2": nn.LayerNorm(dim),
                      "mlp": nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))}
        self.norm1, self.attn, self.norm2, self.mlp = (layers[k] for k in ("norm1", "attn", "norm2", "mlp"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class KWT(nn.Module):
    """A standalone KWT subnet. Input (B, frames, n_mels); output (B, classes) logits."""

    def __init__(self, spec: SubnetSpec, arch: KWTArch = KWTArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40), layers: dict | None = None):
        """Built from the spec, or (extraction) from ready `layers` {stem, embed, cls_token,
        pos_embed, blocks, norm, head}."""
        super().__init__()
        self.spec, self.arch = spec, arch
        self.input_norm = InputNorm(arch.input_norm)  # no parameters: extraction rebuilds it from arch
        dim, mlp_dim = spec.channels
        frames, n_mels = input_shape
        if layers is None:
            layers = {"stem": _stem(arch), "embed": nn.Linear(arch.token_features(n_mels), dim),
                      "cls_token": nn.Parameter(torch.zeros(1, 1, dim)),
                      "pos_embed": nn.Parameter(torch.zeros(1, frames + 1, dim)),
                      "blocks": nn.Sequential(*(Block(dim, mlp_dim, arch.head_dim) for _ in range(spec.depths[0]))),
                      "norm": nn.LayerNorm(dim), "head": nn.Linear(dim, num_classes)}
        self.stem, self.embed = layers["stem"], layers["embed"]
        self.cls_token, self.pos_embed = layers["cls_token"], layers["pos_embed"]
        self.blocks, self.norm = layers["blocks"], layers["norm"]
        self.dropout = nn.Dropout(arch.dropout)
        self.head = layers["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.stem(self.input_norm(x)))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(self.dropout(x[:, 0]))


class _SuperBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.norm1 = DynamicLayerNorm(dim)
        self.q, self.k, self.v, self.proj = (DynamicLinear(dim, dim) for _ in range(4))
        self.norm2 = DynamicLayerNorm(dim)
        self.fc1 = DynamicLinear(dim, mlp_dim)
        self.fc2 = DynamicLinear(mlp_dim, dim)

    def set_active(self, dim: int, mlp_dim: int) -> None:
        for layer in (self.q, self.k, self.v, self.proj, self.fc2):
            layer.active_out = dim
        self.fc1.active_out = mlp_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.proj(_attention(self.q(h), self.k(h), self.v(h), self.head_dim))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    def to_static(self, dim: int) -> Block:
        """The active slice as a plain `Block` (dim features in, the MLP at fc1's active width)."""
        mlp_dim = self.fc1.active_out
        attn = Attention(dim, self.head_dim, {name: getattr(self, name).to_static(dim) for name in ("q", "k", "v", "proj")})
        mlp = nn.Sequential(self.fc1.to_static(dim), nn.GELU(), self.fc2.to_static(mlp_dim))
        return Block(dim, mlp_dim, self.head_dim, {"norm1": self.norm1.to_static(dim), "attn": attn,
                                                   "norm2": self.norm2.to_static(dim), "mlp": mlp})


class KWTSupernet(nn.Module):
    """Full-size KWT weights; `set_active(spec)` picks the subnet that `forward` runs."""

    def __init__(self, space: SearchSpace, arch: KWTArch = KWTArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40)):
        super().__init__()
        self.space, self.arch, self.num_classes, self.input_shape = space, arch, num_classes, input_shape
        dim, mlp_dim = (c[-1] for c in space.channel_choices)
        frames, n_mels = input_shape
        self.input_norm = InputNorm(arch.input_norm)
        self.stem = _stem(arch)
        self.embed = DynamicLinear(arch.token_features(n_mels), dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, frames + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(_SuperBlock(dim, mlp_dim, arch.head_dim) for _ in range(max(space.depth_choices[0])))
        self.norm = DynamicLayerNorm(dim)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = DynamicLinear(dim, num_classes)
        self.active = space.largest()
        self.set_active(self.active)

    def set_active(self, spec: SubnetSpec) -> None:
        self.space.validate(spec)
        self.active = spec
        dim, mlp_dim = spec.channels
        self.embed.active_out = dim
        for block in self.blocks:
            block.set_active(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.active.channels[0]
        x = self.embed(self.stem(self.input_norm(x)))
        x = torch.cat([self.cls_token[..., :dim].expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed[..., :dim]
        for block in self.blocks[: self.active.depths[0]]:
            x = block(x)
        return self.head(self.dropout(self.norm(x)[:, 0]))

    def get_active_subnet(self) -> KWT:
        """The active subnet as a plain `KWT`: each dynamic op's `to_static`, composed."""
        spec = self.active
        dim = spec.channels[0]
        blocks = nn.Sequential(*(b.to_static(dim) for b in self.blocks[: spec.depths[0]]))
        layers = {"stem": copy.deepcopy(self.stem),
                  "embed": self.embed.to_static(self.arch.token_features(self.input_shape[1])),
                  "cls_token": nn.Parameter(self.cls_token[..., :dim].detach().clone()),
                  "pos_embed": nn.Parameter(self.pos_embed[..., :dim].detach().clone()),
                  "blocks": blocks, "norm": self.norm.to_static(dim), "head": self.head.to_static(dim)}
        net = KWT(spec, self.arch, self.num_classes, self.input_shape, layers)
        net.dropout.p = self.dropout.p
        return net.train(self.training)
