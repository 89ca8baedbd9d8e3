"""DS-CNN: the depthwise-separable CNN of MLPerf Tiny's KWS reference, made slimmable.

Zhang et al., "Hello Edge: Keyword Spotting on Microcontrollers" (2017) introduced DS-CNN;
MLPerf Tiny's reference is a 10×4 stride-2 convolution of 64 filters followed by four
depthwise-separable blocks of 64 channels, average pooling and a dense layer (23,756 trainable
parameters on 49×10 MFCCs). edgekws's default supernet widens and deepens it into three stages,
each starting with a stride-2 block (24×20 after the stem → 12×10 → 6×5 → 3×3: the first stage
at full stem resolution cost 3.3× the MACs — 22.0M vs 6.6M at width 1.0 — and 2.4× the CPU
training time, for a 40-mel input that already has 4× MLPerf's frequency resolution), with
elastic width per stage (switchable BN)
and elastic depth per stage (the first d blocks of a stage run; later blocks are skipped, as in
once-for-all), for 40 log-mels × 49 frames.

`DSCNN` is the static model: only Conv2d, BatchNorm2d, ReLU, pooling, Dropout and Linear, built
from a `SubnetSpec` alone. `DSCNNSupernet` holds the full-size weights.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekws.models.dscnn_arch import DSCNNArch, block_plan
from edgekws.models.layers import InputNorm
from edgekws.ops import DynamicConv2d, DynamicDepthwiseConv2d, DynamicLinear, SwitchableBatchNorm2d
from edgekws.spec import SearchSpace, SubnetSpec


_plan = block_plan  # (in, out, stride) of every active block


def ds_block(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Sequential:
    """Depthwise 3×3 (+BN, ReLU) then pointwise 1×1 (+BN, ReLU)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=bias),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, 1, bias=bias),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class DSCNN(nn.Module):
    """A standalone DS-CNN subnet. Input (B, frames, n_mels) log-mels; output (B, classes) logits."""

    def __init__(self, spec: SubnetSpec, arch: DSCNNArch = DSCNNArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40), layers: dict[str, nn.Module] | None = None):
        """Built from the spec, or (extraction) from ready `layers` {stem, blocks, head}."""
        super().__init__()
        self.spec, self.arch = spec, arch
        self.input_norm = InputNorm(arch.input_norm)
        if layers is None:
            w0 = spec.channels[0]
            plan = _plan(spec, arch)
            layers = {
                "stem": nn.Sequential(
                    nn.Conv2d(1, w0, arch.stem_kernel, arch.stem_stride, arch.stem_padding, bias=arch.bias),
                    nn.BatchNorm2d(w0),
                    nn.ReLU(),
                ),
                "blocks": nn.Sequential(*(ds_block(i, o, s, arch.bias) for i, o, s in plan)),
                "head": nn.Linear(plan[-1][1] if plan else w0, num_classes),
            }
        self.stem, self.blocks = layers["stem"], layers["blocks"]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = layers["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.input_norm(x).unsqueeze(1)))
        return self.head(self.dropout(torch.flatten(self.pool(x), 1)))


class _SuperDSBlock(nn.Module):
    def __init__(self, in_choices, out_choices, stride: int, bias: bool):
        super().__init__()
        in_max, out_max = max(in_choices), max(out_choices)
        self.dw = DynamicDepthwiseConv2d(in_max, 3, stride, 1, bias=bias)
        self.dw_bn = SwitchableBatchNorm2d(in_choices)
        self.pw = DynamicConv2d(in_max, out_max, 1, bias=bias)
        self.pw_bn = SwitchableBatchNorm2d(out_choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU in place: BatchNorm's backward needs its input, not its output, so the output's
        # buffer can take the ReLU (one multi-MB tensor fewer per layer; the math is unchanged).
        x = torch.relu_(self.dw_bn(self.dw(x)))
        return torch.relu_(self.pw_bn(self.pw(x)))

    def to_static(self, in_channels: int) -> nn.Sequential:
        """The block's active slice in `ds_block`'s layout."""
        out = self.pw.active_out
        return nn.Sequential(self.dw.to_static(in_channels), self.dw_bn.to_static(in_channels), nn.ReLU(),
                             self.pw.to_static(in_channels), self.pw_bn.to_static(out), nn.ReLU())


class DSCNNSupernet(nn.Module):
    """Full-size DS-CNN weights; `set_active(spec)` picks the subnet that `forward` runs."""

    def __init__(self, space: SearchSpace, arch: DSCNNArch = DSCNNArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40)):
        super().__init__()
        self.space, self.arch, self.num_classes, self.input_shape = space, arch, num_classes, input_shape
        self.input_norm = InputNorm(arch.input_norm)
        wc = space.channel_choices
        self.stem_conv = DynamicConv2d(1, wc[0][-1], arch.stem_kernel, arch.stem_stride, arch.stem_padding, bias=arch.bias)
        self.stem_bn = SwitchableBatchNorm2d(wc[0])
        self.stages = nn.ModuleList()
        for s, (depths, stride) in enumerate(zip(space.depth_choices, arch.stage_strides)):
            blocks = [_SuperDSBlock(wc[s] if i == 0 else wc[s + 1], wc[s + 1], stride if i == 0 else 1, arch.bias)
                      for i in range(max(depths))]
            self.stages.append(nn.ModuleList(blocks))
        self.dropout = nn.Dropout(arch.dropout)
        self.head = DynamicLinear(wc[-1][-1], num_classes)
        self.active = space.largest()
        self.set_active(self.active)

    def set_active(self, spec: SubnetSpec) -> None:
        self.space.validate(spec)
        self.active = spec
        self.stem_conv.active_out = spec.channels[0]
        for stage, width in zip(self.stages, spec.channels[1:]):
            for block in stage:
                block.pw.active_out = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.stem_bn(self.stem_conv(self.input_norm(x).unsqueeze(1))))  # in place: see _SuperDSBlock
        for stage, depth in zip(self.stages, self.active.depths):
            for block in stage[:depth]:
                x = block(x)
        return self.head(self.dropout(x.mean(dim=(2, 3))))

    def get_active_subnet(self) -> DSCNN:
        """The active subnet as a plain `DSCNN`: each dynamic op's `to_static`, composed in the
        subnet's layout (see `edgekws.extract`)."""
        spec = self.active
        w0 = spec.channels[0]
        stem = nn.Sequential(self.stem_conv.to_static(1), self.stem_bn.to_static(w0), nn.ReLU())
        active = [b for stage, d in zip(self.stages, spec.depths) for b in stage[:d]]
        plan = _plan(spec, self.arch)
        blocks = nn.Sequential(*(b.to_static(cin) for b, (cin, _, _) in zip(active, plan)))
        last = plan[-1][1] if plan else w0
        net = DSCNN(spec, self.arch, self.num_classes, self.input_shape,
                    layers={"stem": stem, "blocks": blocks, "head": self.head.to_static(last)})
        net.dropout.p = self.dropout.p
        return net.train(self.training)
