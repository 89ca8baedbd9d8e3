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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekws.ops import DynamicLayerNorm, DynamicLinear
from edgekws.spec import SearchSpace, SubnetSpec


@dataclass(frozen=True)
class KWTArch:
    head_dim: int = 16
    dropout: float = 0.1


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

    def __init__(self, dim: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

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


class Block(nn.Module):
    """Pre-norm Transformer layer: x + attn(LN(x)), then x + MLP(LN(x))."""

    keeps_input_alive = True  # the residual stream stays in memory across the block

    def __init__(self, dim: int, mlp_dim: int, head_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class KWT(nn.Module):
    """A standalone KWT subnet. Input (B, frames, n_mels); output (B, classes) logits."""

    def __init__(self, spec: SubnetSpec, arch: KWTArch = KWTArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40)):
        super().__init__()
        self.spec, self.arch = spec, arch
        dim, mlp_dim = spec.widths
        frames, n_mels = input_shape
        self.embed = nn.Linear(n_mels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, frames + 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, mlp_dim, arch.head_dim) for _ in range(spec.depths[0])))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
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


class KWTSupernet(nn.Module):
    """Full-size KWT weights; `set_active(spec)` picks the subnet that `forward` runs."""

    def __init__(self, space: SearchSpace, arch: KWTArch = KWTArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40)):
        super().__init__()
        self.space, self.arch, self.num_classes, self.input_shape = space, arch, num_classes, input_shape
        dim, mlp_dim = (c[-1] for c in space.width_choices)
        frames, n_mels = input_shape
        self.embed = DynamicLinear(n_mels, dim)
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
        dim, mlp_dim = spec.widths
        self.embed.active_out = dim
        for block in self.blocks:
            block.set_active(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.active.widths[0]
        x = self.embed(x)
        x = torch.cat([self.cls_token[..., :dim].expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed[..., :dim]
        for block in self.blocks[: self.active.depths[0]]:
            x = block(x)
        return self.head(self.dropout(self.norm(x)[:, 0]))

    def get_active_subnet(self) -> KWT:
        spec = self.active
        dim, mlp_dim = spec.widths
        net = KWT(spec, self.arch, self.num_classes, self.input_shape)

        def lin(dst: nn.Linear, src: DynamicLinear, out: int, inp: int) -> None:
            dst.weight.copy_(src.linear.weight[:out, :inp])
            dst.bias.copy_(src.linear.bias[:out])

        def norm(dst: nn.LayerNorm, src: DynamicLayerNorm) -> None:
            dst.weight.copy_(src.norm.weight[:dim])
            dst.bias.copy_(src.norm.bias[:dim])

        with torch.no_grad():
            lin(net.embed, self.embed, dim, self.input_shape[1])
            net.cls_token.copy_(self.cls_token[..., :dim])
            net.pos_embed.copy_(self.pos_embed[..., :dim])
            for dst, src in zip(net.blocks, self.blocks):
                norm(dst.norm1, src.norm1)
                norm(dst.norm2, src.norm2)
                for name in ("q", "k", "v", "proj"):
                    lin(getattr(dst.attn, name), getattr(src, name), dim, dim)
                lin(dst.mlp[0], src.fc1, mlp_dim, dim)
                lin(dst.mlp[2], src.fc2, dim, mlp_dim)
            norm(net.norm, self.norm)
            lin(net.head, self.head, self.num_classes, dim)
        net.dropout.p = self.dropout.p
        return net.train(self.training)
