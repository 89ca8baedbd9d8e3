"""KWT's fixed architecture choices and its graph as a list of costed ops (torch-free; the torch
model is in `kwt.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from edgekws import costs
from edgekws.spec import SubnetSpec


@dataclass(frozen=True)
class KWTArch:
    head_dim: int = 16
    dropout: float = 0.1


def kwt_ops(spec: SubnetSpec, arch: KWTArch, num_classes: int, input_shape: tuple[int, int]) -> list[costs.Op]:
    """Frame embedding, class token and positional embedding, pre-norm layers (LN, attention,
    LN, MLP with GELU, each inside a residual stream), final LN, dropout, head on the class token."""
    dim, mlp = spec.channels
    frames, n_mels = input_shape
    t = frames + 1
    ops = [costs.linear(n_mels, dim, frames), costs.free_parameter(dim), costs.free_parameter(t * dim)]
    for _ in range(spec.depths[0]):
        held = t * dim  # the block's input stays alive for the residual additions
        ops += [costs.layernorm(dim, t, held), *costs.attention(dim, t, arch.head_dim, held),
                costs.layernorm(dim, t, held), costs.linear(dim, mlp, t, held=held),
                costs.elementwise("gelu", t * mlp, held), costs.linear(mlp, dim, t, held=held)]
    ops += [costs.layernorm(dim, t), costs.elementwise("dropout", dim), costs.linear(dim, num_classes)]
    return ops
