"""DS-CNN's fixed architecture choices and its deployed graph as a list of costed ops (torch-free:
the registry, `edgekws info` and searches read it without importing torch; the torch model is in
`dscnn.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from edgekws import costs
from edgekws.models.input_norm import check_input_norm, input_norm_ops
from edgekws.spec import SubnetSpec


@dataclass(frozen=True)
class DSCNNArch:
    """Fixed (non-searchable) architecture choices of a DS-CNN family."""

    stem_kernel: tuple[int, int] = (10, 4)  # (time, frequency), as in Hello Edge / MLPerf Tiny
    stem_stride: tuple[int, int] = (2, 2)
    stage_strides: tuple[int, ...] = (2, 2, 2)  # stride of the first block of each stage
    bias: bool = False  # conv biases are redundant before BN; MLPerf's reference keeps them
    dropout: float = 0.1
    # Per-clip normalisation of the log-mel input inside the model (`edgekws.models.input_norm`);
    # "none" is every checkpoint made before the option.
    input_norm: str = "none"

    def __post_init__(self) -> None:
        check_input_norm(self.input_norm)

    @property
    def stem_padding(self) -> tuple[int, int]:
        return ((self.stem_kernel[0] - 1) // 2, (self.stem_kernel[1] - 1) // 2)


def block_plan(spec: SubnetSpec, arch: DSCNNArch) -> list[tuple[int, int, int]]:
    """(in_channels, out_channels, stride) of every active block."""
    blocks, cin = [], spec.channels[0]
    for width, depth, stride in zip(spec.channels[1:], spec.depths, arch.stage_strides):
        for i in range(depth):
            blocks.append((cin, width, stride if i == 0 else 1))
            cin = width
    return blocks


def dscnn_ops(spec: SubnetSpec, arch: DSCNNArch, num_classes: int, input_shape: tuple[int, int]) -> list[costs.Op]:
    """Input normalisation (if any), stem conv (+BN, ReLU), depthwise-separable blocks (dw 3×3 +BN,
    ReLU, pw 1×1 +BN, ReLU), global average pool, dropout, linear head."""
    w0 = spec.channels[0]
    ops = input_norm_ops(arch.input_norm, input_shape)
    stem, hw = costs.conv2d_bn(1, w0, input_shape, arch.stem_kernel, arch.stem_stride, arch.stem_padding, bias=arch.bias)
    ops += stem + [costs.elementwise("relu", stem[-1].out_elems)]
    channels = w0
    for cin, cout, stride in block_plan(spec, arch):
        dw, hw = costs.conv2d_bn(cin, cin, hw, (3, 3), (stride, stride), (1, 1), groups=cin, bias=arch.bias)
        ops += dw + [costs.elementwise("relu", dw[-1].out_elems)]
        pw, hw = costs.conv2d_bn(cin, cout, hw, (1, 1), (1, 1), (0, 0), bias=arch.bias)
        ops += pw + [costs.elementwise("relu", pw[-1].out_elems)]
        channels = cout
    ops += [costs.pool(channels, hw), costs.elementwise("dropout", channels), costs.linear(channels, num_classes)]
    return ops
