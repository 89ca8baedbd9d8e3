"""KWT's fixed architecture choices and its graph as a list of costed ops (torch-free; the torch
model is in `kwt.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from edgekws import costs
from edgekws.models.input_norm import check_input_norm, input_norm_ops
from edgekws.spec import SubnetSpec


# How a frame becomes a token (`KWTArch.embed`).
EMBEDS = ("linear", "conv")
# The convolutional stem's two convolutions (kernel, stride, padding; time × frequency): one
# definition for the model (`kwt.ConvEmbed`), the token width and the cost table.
EMBED_CONV = ((3, 3), (1, 2), (1, 1))


@dataclass(frozen=True)
class KWTArch:
    """Fixed (non-searchable) architecture choices of a KWT family."""

    head_dim: int = 16
    dropout: float = 0.1
    # Per-clip normalisation of the log-mel input inside the model (`edgekws.models.input_norm`),
    # as DS-CNN has it; "none" is every KWT checkpoint made before the option. Measured on an
    # unheard engine it does not help KWT (README, Stage 3: `band_mean`, flite held out).
    input_norm: str = "none"
    # How a log-mel frame becomes a token: "linear" (Berg et al.: one linear map over the mel
    # bands; every KWT checkpoint made before the option) or "conv" (two 3×3 convolutions with
    # GELU, each stride 2 along frequency, then the linear map over their outputs). A linear map
    # over the bands sees a spectrum shifted or recoloured by another voice as a different token;
    # local filters that slide along frequency, as DS-CNN's do, see the same pattern moved.
    # Measured with flite held out (README, Stage 3): +7 to +17 pt on the unheard engine and +3.6
    # to +9.5 in-distribution at 20 epochs, for 1.06-1.32x the estimated latency on Arm.
    embed: str = "linear"
    embed_channels: int = 8

    def __post_init__(self) -> None:
        from edgekws.errors import EdgeKWSError

        check_input_norm(self.input_norm)
        if self.embed not in EMBEDS:
            raise EdgeKWSError(f"embed must be one of {', '.join(EMBEDS)} (got {self.embed!r})")
        if self.embed_channels < 1:
            raise EdgeKWSError(f"embed_channels must be at least 1 (got {self.embed_channels})")

    def token_features(self, n_mels: int) -> int:
        """Features per frame that the linear embedding maps to a token."""
        if self.embed == "linear":
            return n_mels
        (_, k), (_, st), (_, pad) = EMBED_CONV
        return self.embed_channels * costs.conv_out(costs.conv_out(n_mels, k, st, pad), k, st, pad)


def kwt_ops(spec: SubnetSpec, arch: KWTArch, num_classes: int, input_shape: tuple[int, int]) -> list[costs.Op]:
    """Input normalisation (if any), the convolutional stem (if any), frame embedding, class token
    and positional embedding, pre-norm layers (LN, attention, LN, MLP with GELU, each inside a
    residual stream), final LN, dropout, head on the class token."""
    dim, mlp = spec.channels
    frames, n_mels = input_shape
    t = frames + 1
    ops = input_norm_ops(arch.input_norm, input_shape)
    if arch.embed == "conv":
        hw, c = input_shape, arch.embed_channels
        for cin in (1, c):
            conv, hw = costs.conv2d_bn(cin, c, hw, *EMBED_CONV, bias=True, bn=False)
            ops += [*conv, costs.elementwise("gelu", c * hw[0] * hw[1])]
    ops += [costs.linear(arch.token_features(n_mels), dim, frames), costs.free_parameter(dim),
            costs.free_parameter(t * dim)]
    for _ in range(spec.depths[0]):
        held = t * dim  # the block's input stays alive for the residual additions
        ops += [costs.layernorm(dim, t, held), *costs.attention(dim, t, arch.head_dim, held),
                costs.layernorm(dim, t, held), costs.linear(dim, mlp, t, held=held),
                costs.elementwise("gelu", t * mlp, held), costs.linear(mlp, dim, t, held=held)]
    ops += [costs.layernorm(dim, t), costs.elementwise("dropout", dim), costs.linear(dim, num_classes)]
    return ops
