"""A model family defined in this file alone goes through every export format.

The family is a slimmable frame-wise highway MLP (a gated layer in the spirit of the small
highway networks of Lu et al. 2016): a dynamic op with its own `to_static`, a supernet that
composes them, a static subnet of plain layers, and its registration — and nothing outside this
file changes for it to be extracted, lowered to TFLite, exported to ONNX and TFLite (float and
int8) and gated. If the export machinery needed a per-family port anywhere, this test would fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekws.assets import DEFAULT_CHECKPOINT, DEFAULT_PACK, load_pack
from edgekws.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from edgekws.export import export_subnet
from edgekws.export.formats import Thresholds
from edgekws.extract import extract, fold_bn
from edgekws.models import _FAMILIES, Family, register_family
from edgekws.ops import DynamicLinear, DynamicOp
from edgekws.spec import SearchSpace, SubnetSpec

FAMILY = "toyhighway"


@dataclass(frozen=True)
class ToyArch:
    dropout: float = 0.0


class Highway(nn.Module):
    """y = g·relu(W_h x) + (1 − g)·x with g = σ(W_g x): a static gated layer of plain Linears."""

    def __init__(self, dim: int, h: nn.Linear | None = None, g: nn.Linear | None = None):
        super().__init__()
        self.h, self.g = h or nn.Linear(dim, dim), g or nn.Linear(dim, dim)

    def forward(self, x):
        gate = torch.sigmoid(self.g(x))
        return gate * torch.relu(self.h(x)) + (1 - gate) * x


class DynamicHighway(DynamicOp):
    """The slimmable gated layer: full-size weights, the active width read from the input."""

    def __init__(self, dim_max: int):
        super().__init__()
        self.h, self.g = DynamicLinear(dim_max, dim_max), DynamicLinear(dim_max, dim_max)

    def forward(self, x):
        self.h.active_out = self.g.active_out = x.shape[-1]
        gate = torch.sigmoid(self.g(x))
        return gate * F.relu(self.h(x)) + (1 - gate) * x

    def to_static(self, in_features: int) -> Highway:
        self.h.active_out = self.g.active_out = in_features
        return Highway(in_features, self.h.to_static(in_features), self.g.to_static(in_features))


class ToyNet(nn.Module):
    """Static subnet: frame embedding, highway layers, mean over time, head."""

    def __init__(self, spec: SubnetSpec, arch: ToyArch = ToyArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40), layers: dict | None = None):
        super().__init__()
        self.spec = spec
        dim = spec.channels[0]
        layers = layers or {"embed": nn.Linear(input_shape[1], dim),
                            "blocks": nn.Sequential(*(Highway(dim) for _ in range(spec.depths[0]))),
                            "head": nn.Linear(dim, num_classes)}
        self.embed, self.blocks, self.head = layers["embed"], layers["blocks"], layers["head"]

    def forward(self, x):
        return self.head(self.blocks(torch.relu(self.embed(x))).mean(dim=1))


class ToySupernet(nn.Module):
    def __init__(self, space: SearchSpace, arch: ToyArch = ToyArch(), num_classes: int = 12,
                 input_shape: tuple[int, int] = (49, 40)):
        super().__init__()
        self.space, self.arch, self.num_classes, self.input_shape = space, arch, num_classes, input_shape
        dim = space.channel_choices[0][-1]
        self.embed = DynamicLinear(input_shape[1], dim)
        self.blocks = nn.ModuleList(DynamicHighway(dim) for _ in range(max(space.depth_choices[0])))
        self.head = DynamicLinear(dim, num_classes)
        self.set_active(space.largest())

    def set_active(self, spec: SubnetSpec) -> None:
        self.space.validate(spec)
        self.active = spec
        self.embed.active_out = spec.channels[0]

    def forward(self, x):
        x = F.relu(self.embed(x))
        for block in self.blocks[: self.active.depths[0]]:
            x = block(x)
        return self.head(x.mean(dim=1))

    def get_active_subnet(self) -> ToyNet:
        dim = self.active.channels[0]
        layers = {"embed": self.embed.to_static(self.input_shape[1]),
                  "blocks": nn.Sequential(*(b.to_static(dim) for b in self.blocks[: self.active.depths[0]])),
                  "head": self.head.to_static(dim)}
        return ToyNet(self.active, self.arch, self.num_classes, self.input_shape, layers).train(self.training)


@pytest.fixture
def toy_family():
    fam = register_family(Family(
        name=FAMILY,
        space=SearchSpace.from_max(FAMILY, channels={"dim": (64, 16)}, depths={"layers": (1, 2)}),
        arch=ToyArch(), supernet_cls=ToySupernet, subnet_cls=ToyNet,
        description="toy slimmable highway MLP (a test's own family)"))
    yield fam
    _FAMILIES.pop(FAMILY)


def test_toy_family_extracts_to_plain_layers(toy_family):
    torch.manual_seed(0)
    sup = toy_family.supernet()
    x = torch.randn(4, 49, 40)
    for spec in (toy_family.space.largest(), toy_family.space.smallest()):
        sub = extract(sup, spec).eval()
        assert not any(isinstance(m, DynamicOp) for m in sub.modules())
        sup.set_active(spec)
        torch.testing.assert_close(sub(x), sup.eval()(x), atol=1e-5, rtol=1e-5)


def test_toy_family_exports_to_every_format_behind_the_gates(toy_family, tmp_path):
    """Trained briefly on the pinned pack so that int8 has something to agree with; the default
    gates apply (float parity 1e-4, int8 top-1 agreement 0.98, drop ≤ 1 pt) unless measured
    otherwise — the figures are asserted from the manifest."""
    ck = load_checkpoint(DEFAULT_CHECKPOINT)
    pack = load_pack(DEFAULT_PACK)
    torch.manual_seed(0)
    sup = toy_family.supernet(len(ck.labels), ck.features.shape)
    opt = torch.optim.AdamW(sup.parameters(), lr=3e-3)
    x, y = torch.from_numpy(pack.features[200:]), torch.from_numpy(pack.targets[200:])
    for step in range(40):
        idx = torch.randint(0, len(x), (64,), generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        for spec in (toy_family.space.largest(), toy_family.space.smallest()):
            sup.set_active(spec)
            F.cross_entropy(sup(x[idx]), y[idx]).backward()
        opt.step()
    path = tmp_path / "toy.pt"
    save_checkpoint(path, Checkpoint(FAMILY, toy_family.space, ck.features, ck.labels, sup.state_dict(),
                                     calibration=ck.calibration))
    res = export_subnet(width=0.5, checkpoint=path, out=tmp_path / "out", thresholds=Thresholds(int8_agreement=0.9, int8_max_drop_pt=5.0))
    assert res.passed, [c for c in res.manifest["validation"]["checks"] if not c["passed"]]
    checks = res.manifest["validation"]["checks"]
    files = {c["artefact"] for c in checks}
    assert files == {"model_float.onnx", "model_int8.onnx", "model_float.tflite", "model_int8.tflite"}
    for c in checks:
        if c["metric"] == "max abs diff":
            assert c["value"] <= 1e-4
        if c["metric"] == "top-1 agreement":
            assert c["value"] >= 0.9
    assert res.manifest["spec"]["family"] == FAMILY


def test_a_family_without_input_norm_refuses_it_in_one_line(toy_family):
    """`--input-norm` sets a field of the family's architecture; a family whose architecture has
    no such field (this one) is refused by name, not with a dataclass TypeError."""
    from edgekws.errors import EdgeKWSError
    from edgekws.recipe import TrainConfig
    from edgekws.train import family_for

    assert family_for(TrainConfig(family=FAMILY)).arch == ToyArch()
    with pytest.raises(EdgeKWSError, match=f"^--input-norm: family '{FAMILY}' has no input normalisation$"):
        family_for(TrainConfig(family=FAMILY, input_norm="band_mean"))
