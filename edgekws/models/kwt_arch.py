"""KWT's fixed architecture choices and its graph as a list of costed ops (torch-free; the torch
model is in `kwt.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from edgekws import costs
from edgekws.models.input_norm import check_input_norm, input_norm_ops
from edgekws.spec import SubnetSpec


@dataclass(frozen=True)
class KWTArch:
    """Fixed (non-searchable) architecture choices of a KWT family."""

    head_dim: int = 16
    dropout: float = 0.1
    # Per-clip normalisation of the log-mel input inside the model (`edgekws.models.input_norm`),
    # as DS-CNN has it; "none" is every KWT checkpoint made before the option. Measured on an
    # unheard engine it does not help KWT (README, Stage 3: `band_mean`, flite held out).
    input_norm: str = "none"

    def __post_init__(self) -> None:
        check_input_norm(self.input_norm)


def kwt_ops(spec: SubnetSpec, arch: KWTArch, num_classes: int, input_shape: tuple[int, int]) -> list[costs.Op]:
    """Input normalisation (if any), frame embedding, class token and positional embedding,
    pre-norm layers (LN, attention, LN, MLP with GELU, each inside a residual stream), final LN,
    dropout, head on the class token."""
    dim, mlp = spec.channels
    frames, n_mels = input_shape
    t = frames + 1
    ops = input_norm_ops(arch.input_norm, input_shape)
    ops += [costs.linear(n_mels, dim, frames), costs.free_parameter(dim), costs.free_parameter(t * dim)]
    for _ in range(spec.depths[0]):
        held = t * dim  # the block's input stays alive for the residual additions
        ops += [costs.layernorm(dim, t, held), *costs.attention(dim, t, arch.head_dim, held),
                costs.layernorm(dim, t, held), costs.linear(dim, mlp, t, held=held),
                costs.elementwise("gelu", t * mlp, held), costs.linear(mlp, dim, t, held=held)]
    ops += [costs.layernorm(dim, t), costs.elementwise("dropout", dim), costs.linear(dim, num_classes)]
    return ops
