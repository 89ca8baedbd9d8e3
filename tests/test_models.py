"""Supernets and extraction, parametrized over the family registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from torch import nn

from edgekws.errors import EdgeKWSError
from edgekws.extract import extract, fold_bn, recalibrate_bn
from edgekws.models import PARAM_BUDGET, Family, build_subnet, count_params, create_supernet, get_family, list_families, register_family
from edgekws.models.layers import InputNorm
from edgekws.ops import DynamicOp
from edgekws.spec import SearchSpace

PLAIN = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.GELU, nn.Linear, nn.LayerNorm, nn.Dropout, nn.AdaptiveAvgPool2d,
         nn.Sequential, nn.Identity, InputNorm)


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN statistic non-trivial values, so a wrong slice shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def specs_for(space: SearchSpace):
    rng = np.random.default_rng(0)
    return [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(4))]


def input_for(fam: Family, batch: int = 3) -> torch.Tensor:
    shape = fam.input_shape or (49, 40)
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list_families())
def test_extracted_equals_supernet(family):
    fam = get_family(family)
    sup = randomize(create_supernet(family)).eval()
    x = input_for(fam)
    for spec in specs_for(fam.space):
        sub = extract(sup, spec).eval()
        sup.set_active(spec)
        with torch.no_grad():
            torch.testing.assert_close(sub(x), sup(x), atol=1e-5, rtol=1e-5)
        assert not any(isinstance(m, DynamicOp) for m in sub.modules())
        # the model class is rebuilt from the spec alone and loads the plain state dict
        rebuilt = build_subnet(spec, input_shape=fam.input_shape or (49, 40))
        rebuilt.load_state_dict(sub.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(rebuilt.eval()(x), sub(x), atol=0, rtol=0)
        leaves = {type(m) for m in sub.modules() if not list(m.children())}
        assert all(issubclass(t, PLAIN) for t in leaves), leaves


@pytest.mark.parametrize("family", list_families())
def test_extract_leaves_supernet_state_alone(family):
    fam = get_family(family)
    sup = create_supernet(family)
    before = sup.active
    extract(sup, fam.space.smallest())
    assert sup.active == before


@pytest.mark.parametrize("family", list_families())
def test_largest_subnet_within_budget(family):
    fam = get_family(family)
    assert count_params(build_subnet(fam.space.largest(), input_shape=fam.input_shape or (49, 40))) <= PARAM_BUDGET


def test_registry_refuses_over_budget_family():
    big = Family("dscnn_huge", SearchSpace.from_max("dscnn_huge", {"stem": (64, 8), "stage1": (512, 8), "stage2": (512, 8),
                                                                    "stage3": (512, 8)}, {"stage1": (2,), "stage2": (3,), "stage3": (3,)}),
                 get_family("dscnn").arch, get_family("dscnn").supernet_cls, get_family("dscnn").subnet_cls, "too big")
    with pytest.raises(EdgeKWSError, match="over the 250,000 budget"):
        register_family(big)
    assert "dscnn_huge" not in list_families()
    # research override
    assert count_params(big.subnet(big.space.largest())) > PARAM_BUDGET


def test_unknown_family():
    with pytest.raises(EdgeKWSError, match="valid: dscnn, dscnn_mlperf, kwt"):
        create_supernet("resnet")


@pytest.mark.parametrize("family", ["dscnn", "dscnn_mlperf"])
def test_fold_bn_keeps_outputs(family):
    fam = get_family(family)
    net = randomize(build_subnet(fam.space.largest(), input_shape=fam.input_shape or (49, 40))).eval()
    folded = fold_bn(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = input_for(fam)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)


def test_recalibrate_bn_matches_batch_statistics():
    net = randomize(build_subnet(get_family("dscnn").space.smallest()))
    x = torch.randn(64, 49, 40, generator=torch.Generator().manual_seed(3))
    n = recalibrate_bn(net, [x[:32], x[32:]])
    assert n == 2 and not net.training
    stem_bn = net.stem[1]
    with torch.no_grad():
        pre = net.stem[0](x.unsqueeze(1))
    torch.testing.assert_close(stem_bn.running_mean, pre.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)


def test_switchable_bn_keeps_smallest_width_alive():
    """Sandwich-train a dscnn supernet on a toy task; in eval mode the smallest subnet must still
    classify (shared BN statistics would make it collapse), and its BN is its own."""
    torch.manual_seed(0)
    space = get_family("dscnn").space
    sup = create_supernet("dscnn", num_classes=4)
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 49, 40, generator=g) * 2.0
    def batch(n):
        y = torch.randint(0, 4, (n,), generator=g)
        return protos[y] + torch.randn(n, 49, 40, generator=g), y
    opt = torch.optim.AdamW(sup.parameters(), lr=1e-3)
    sup.train()
    for _ in range(60):
        x, y = batch(32)
        opt.zero_grad()
        for spec in (space.largest(), space.smallest()):
            sup.set_active(spec)
            nn.functional.cross_entropy(sup(x), y).backward()
        opt.step()
    sup.eval()
    x, y = batch(200)
    accs = {}
    with torch.no_grad():
        for name, spec in (("largest", space.largest()), ("smallest", space.smallest())):
            sup.set_active(spec)
            accs[name] = (sup(x).argmax(1) == y).float().mean().item()
            sub = extract(sup, spec)
            recalibrate_bn(sub, [batch(64)[0] for _ in range(4)])
            accs[name + "_recalibrated"] = (sub(x).argmax(1) == y).float().mean().item()
    assert min(accs.values()) > 0.9, accs
    # the stem's first channels see the same input at every width; a pointwise BN does not
    small_bn = sup.stages[0][0].pw_bn.bn[0]
    big_bn = sup.stages[0][0].pw_bn.bn[-1]
    assert not torch.allclose(small_bn.running_var, big_bn.running_var[: small_bn.num_features])


def test_recalibrate_bn_on_a_supernet_touches_only_the_active_subnet():
    space = get_family("dscnn").space
    sup = randomize(create_supernet("dscnn"))
    sup.dropout.p = 0.9  # must stay off during calibration
    before = {k: v.clone() for k, v in sup.state_dict().items() if "running" in k}
    sup.set_active(space.smallest())
    x = torch.randn(64, 49, 40, generator=torch.Generator().manual_seed(4))
    recalibrate_bn(sup, [x])
    after = {k: v for k, v in sup.state_dict().items() if "running" in k}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "stem_bn.bn.0.running_mean" in changed  # width-16 stem BN: used by the smallest subnet
    assert not any(".bn.3." in k for k in changed)  # the widest BNs were not touched
    assert not any(k.startswith("stages.1.1.") for k in changed)  # nor blocks beyond its depth
    assert not sup.training


def test_every_dynamic_op_has_a_to_static_that_matches_it():
    """Extraction composes per layer: each dynamic op's `to_static(in_features)` is a plain layer
    computing exactly what the op computes at its active width."""
    from edgekws import ops

    torch.manual_seed(0)
    conv = ops.DynamicConv2d(16, 32, 3, 2, 1, bias=True)
    conv.active_out = 8
    dw = ops.DynamicDepthwiseConv2d(16, 3, 1, 1, bias=True)
    bn = ops.SwitchableBatchNorm2d((4, 8, 16))
    bn.bn[1].running_mean.normal_()
    lin = ops.DynamicLinear(16, 24)
    lin.active_out = 12
    ln = ops.DynamicLayerNorm(16)
    ln.norm.weight.data.normal_()
    img, seq = torch.randn(2, 8, 10, 10), torch.randn(2, 5, 8)
    cases = [(conv, img), (dw, img), (bn.eval(), img), (lin, seq), (ln, seq)]
    assert {type(op) for op, _ in cases} == {c for c in vars(ops).values()
                                             if isinstance(c, type) and issubclass(c, ops.DynamicOp) and c is not ops.DynamicOp}
    for op, x in cases:
        static = op.to_static(8).eval()
        assert not isinstance(static, ops.DynamicOp)
        assert torch.equal(static(x), op(x)), type(op).__name__


def test_kwt_conv_embed_is_part_of_the_model_and_survives_extraction():
    """`arch.embed = "conv"`: every extracted subnet computes what the supernet does and carries its
    own copy of the stem (shared whole, not sliced); the stem's tokens are each frame's conv outputs
    in frequency-major, channel-minor order; the default, "linear", adds no parameter, so every
    KWT checkpoint made before the choice loads unchanged; a bad choice is one line."""
    from dataclasses import replace

    from edgekws.models.kwt import ConvEmbed

    fam = get_family("kwt")
    sup = randomize(create_supernet("kwt", arch=replace(fam.arch, embed="conv"))).eval()
    assert not any(k.startswith("stem.") for k in create_supernet("kwt").state_dict())
    x = input_for(fam)
    for spec in specs_for(fam.space):
        sup.set_active(spec)
        sub = extract(sup, spec).eval()
        with torch.no_grad():
            torch.testing.assert_close(sub(x), sup(x), atol=1e-5, rtol=1e-5)
        assert isinstance(sub.stem, ConvEmbed) and sub.stem is not sup.stem
        assert sub.embed.in_features == 8 * 10  # 8 channels × 40 mels halved twice
    stem = sup.stem
    with torch.no_grad():
        tokens = stem(x)
        maps = stem.convs(x.unsqueeze(1))  # (B, C, frames, 10)
    b, t = 1, 5
    assert torch.equal(tokens[b, t].reshape(10, 8), maps[b, :, t].T)  # frequency-major, channel-minor
    with pytest.raises(EdgeKWSError, match="embed must be one of linear, conv"):
        replace(fam.arch, embed="patch")


@pytest.mark.parametrize("family", ["dscnn", "kwt"])
@pytest.mark.parametrize("mode", ["band_mean", "spectral_shape"])
def test_input_norm_is_part_of_the_model_and_survives_extraction(family, mode):
    """`arch.input_norm`, in both families: the supernet and every subnet extracted from it are
    the plain model on the normalised input (same weights, the layer has none), and the extracted
    subnet carries the layer."""
    from dataclasses import replace

    fam = get_family(family)
    sup = randomize(create_supernet(family, arch=replace(fam.arch, input_norm=mode))).eval()
    plain = randomize(create_supernet(family)).eval()
    assert sup.state_dict().keys() == plain.state_dict().keys()  # old checkpoints load into either
    x = input_for(fam) + torch.linspace(-3, 2, 40)  # a coloured, offset input
    for spec in specs_for(fam.space):
        sup.set_active(spec)
        plain.set_active(spec)
        sub = extract(sup, spec).eval()
        with torch.no_grad():
            y = sup(x)
            torch.testing.assert_close(sub(x), y, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(plain(InputNorm(mode)(x)), y, atol=1e-5, rtol=1e-5)
        assert isinstance(sub.input_norm, InputNorm) and sub.input_norm.mode == mode
    with pytest.raises(EdgeKWSError, match="input_norm must be one of none, band_mean, spectral_shape"):
        replace(fam.arch, input_norm="cmvn")


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), level=st.floats(-20, 20), frames=st.integers(1, 60))
def test_input_norm_removes_a_fixed_colouring(seed, level, frames):
    """A fixed per-band offset (a microphone's or codec's colouring, in log-mel) leaves
    `band_mean`'s output unchanged, and `spectral_shape`'s up to the offset's mean over the bands
    (the clip's level, which it keeps); `none` is the identity."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, frames, 40, generator=g, dtype=torch.float64) * 3
    colour = torch.randn(1, 1, 40, generator=g, dtype=torch.float64) * 4 + level
    band, shape, none = InputNorm("band_mean"), InputNorm("spectral_shape"), InputNorm("none")
    torch.testing.assert_close(band(x + colour), band(x))
    torch.testing.assert_close(shape(x + colour), shape(x) + colour.mean())
    torch.testing.assert_close(band(x).mean(dim=1), torch.zeros(2, 40, dtype=torch.float64))
    torch.testing.assert_close(shape(x).mean(dim=(1, 2)), x.mean(dim=(1, 2)))  # the level kept
    assert none(x) is x
