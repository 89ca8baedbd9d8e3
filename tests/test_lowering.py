"""The one torch → TF/TFLite lowering (`edgekws.export.lowering`): parity on the ops and layouts it
covers, no layout Transposes where the layout pass can avoid them, and a one-line error for an
op it does not cover."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgekws.errors import EdgeKWSError
from edgekws.export import tflite_format
from edgekws.export.runtimes import TFLiteRunner
from edgekws.extract import fold_bn
from edgekws.models import build_subnet, get_family

pytestmark = pytest.mark.tflite
SHAPE = (49, 40)


def _ops(data: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [op["op_name"] for op in Interpreter(model_content=data)._get_ops_details()]


def _parity(net: nn.Module, shape=SHAPE) -> tuple[float, bytes]:
    x = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    data = tflite_format.convert_float(net.eval(), shape)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    return float(np.abs(TFLiteRunner(data)(x) - ref).max()), data


class Mixer(nn.Module):
    """Every layout relabelling the pass knows — unsqueeze into a conv, permute, transpose into a
    matmul, mean with and without keepdim, cat, expand, slicing, flatten — on one input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, 2, 1)
        self.proj = nn.Linear(40, 16)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.head = nn.Linear(16 + 4, 5)

    def forward(self, x):  # (B, 49, 40)
        c = torch.relu(self.conv(x.unsqueeze(1)))  # (B, 4, 25, 20), NHWC inside
        pooled = c.permute(0, 2, 3, 1).mean(dim=(1, 2))  # (B, 4)
        h = self.proj(x)  # (B, 49, 16)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1)  # (B, 50, 16)
        att = torch.softmax(torch.matmul(h, h.transpose(-1, -2)) * 0.25, dim=-1)  # (B, 50, 50)
        mixed = torch.matmul(att, h)[:, 0]  # (B, 16)
        spatial = c.mean(dim=1, keepdim=True).flatten(1)  # (B, 500), through a keepdim mean
        gate = torch.sigmoid(pooled).mean(dim=1, keepdim=True)  # (B, 1), broadcast below
        return self.head(torch.cat([mixed, pooled], dim=1)) + spatial.mean(dim=1, keepdim=True) * 0.1 + gate


def test_layout_relabellings_keep_parity():
    torch.manual_seed(0)
    diff, _ = _parity(Mixer())
    assert diff <= 1e-5


@pytest.mark.parametrize("family", ["dscnn", "kwt"])
def test_registered_families_lower_without_layout_transposes(family):
    """DS-CNN runs NHWC end to end (one RESHAPE in, one MEAN out, no TRANSPOSE); in KWT the only
    Transposes are the head split/merge of attention, which torch's own graph has too, and
    `q @ kᵀ` folds its transpose into the matmul."""
    fam = get_family(family)
    torch.manual_seed(0)
    net = fold_bn(build_subnet(fam.space.largest()).eval())
    diff, data = _parity(net)
    assert diff <= 1e-4
    ops = _ops(data)
    if family == "dscnn":
        assert "TRANSPOSE" not in ops and ops.count("MEAN") == 1 and ops[0] == "RESHAPE"  # the unsqueeze
    else:
        layers = fam.space.largest().depths[0]
        assert ops.count("TRANSPOSE") == 4 * layers  # q, k, v split and the merge, per layer


@pytest.mark.parametrize("family", ["dscnn", "kwt"])
@pytest.mark.parametrize("mode, means, subs", [("band_mean", 1, 1), ("spectral_shape", 2, 2)])
def test_input_norm_lowers_to_means_and_a_subtraction(family, mode, means, subs):
    """`arch.input_norm` is part of the exported graph, in both families: against the same subnet
    without it, the per-band mean over time (and, for spectral_shape, its mean over the bands)
    and the subtraction are added — besides a Reshape at most, nothing else, no Transpose (DS-CNN
    has none at all)."""
    from collections import Counter
    from dataclasses import replace

    fam = get_family(family)
    spec = fam.space.uniform(0.5)
    graphs = {}
    for norm in ("none", mode):
        torch.manual_seed(0)
        net = fold_bn(replace(fam, arch=replace(fam.arch, input_norm=norm)).subnet(spec).eval())
        diff, data = _parity(net)
        assert diff <= 1e-4
        graphs[norm] = Counter(_ops(data))
    added = graphs[mode] - graphs["none"]
    assert (added["MEAN"], added["SUB"]) == (means, subs) and set(added) <= {"MEAN", "SUB", "RESHAPE"}, added
    assert not graphs["none"] - graphs[mode]  # nothing of the model itself is lost
    assert family == "kwt" or "TRANSPOSE" not in graphs[mode]


def test_kwt_conv_embed_lowers_to_two_convolutions_and_no_transpose():
    """KWT's convolutional stem in the exported graph: against the same subnet with the linear
    embedding, two CONV_2D (each after a PAD) and their GELUs, the input's unsqueeze and the
    tokens' flatten as reshapes — no TRANSPOSE, because the tokens are taken in NHWC order."""
    from collections import Counter
    from dataclasses import replace

    fam = get_family("kwt")
    spec = fam.space.uniform(0.5)
    graphs = {}
    for embed in ("linear", "conv"):
        torch.manual_seed(0)
        net = fold_bn(replace(fam, arch=replace(fam.arch, embed=embed)).subnet(spec).eval())
        diff, data = _parity(net)
        assert diff <= 1e-4
        graphs[embed] = Counter(_ops(data))
    added = graphs["conv"] - graphs["linear"]
    assert added["CONV_2D"] == 2 and added["GELU"] == 2 and set(added) <= {"CONV_2D", "GELU", "PAD", "RESHAPE", "EXPAND_DIMS"}, added
    assert not graphs["linear"] - graphs["conv"]
    assert graphs["conv"]["TRANSPOSE"] == graphs["linear"]["TRANSPOSE"]


def test_an_op_without_a_lowering_is_one_line():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)[:, -1]

    with pytest.raises(EdgeKWSError, match="no TFLite lowering for cumsum"):
        tflite_format.convert_float(Cumulative(), SHAPE)
