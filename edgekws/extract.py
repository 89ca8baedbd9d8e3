"""Extraction: cut a standalone subnet out of a supernet, and the BN steps that go with it.

`extract(supernet, spec)` returns a model made only of plain `torch.nn` layers, whose class is
rebuilt from the spec alone (`edgekws.models.build_subnet(spec)`) and loads from a plain state
dict. The supernet's active subnet is restored afterwards, so extraction has no side effects.

Two explicit, named BN steps:
- `recalibrate_bn(model, batches)`: recompute BatchNorm running statistics of a subnet by running
  training-mode forwards over a few batches. Switchable BN keeps one BN per width, but when stages
  differ in width or depth the statistics a BN saw during training were a mixture; a few batches
  of recalibration fixes that (slimmable networks' "BN calibration").
- `fold_bn(model)`: fold each BatchNorm into the convolution before it (deployment form).
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from edgekws.ops import DynamicOp
from edgekws.spec import SubnetSpec


def extract(supernet: nn.Module, spec: SubnetSpec) -> nn.Module:
    previous = supernet.active
    supernet.set_active(spec)
    try:
        net = supernet.get_active_subnet()
    finally:
        supernet.set_active(previous)
    assert not any(isinstance(m, DynamicOp) for m in net.modules()), "a dynamic op survived extraction"
    return net


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate the running statistics of the BatchNorms the model's forward uses, as an exact
    average over `batches` (once-for-all's BN calibration).

    Works on a static subnet and on a supernet at its active spec: a first forward finds which BN
    layers run, and only those are reset. Only BN layers switch to training mode, so dropout
    stays off. Returns the number of batches used; the model is left in eval mode.
    """
    batches = list(batches)
    if not batches:
        return 0
    model.eval()
    used: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, inp: used.append(m))
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        model(batches[0][:1])
    finally:
        for h in hooks:
            h.remove()
    bns = list(dict.fromkeys(used))
    saved = {bn: bn.momentum for bn in bns}
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
        bn.train()
    try:
        for x in batches:
            model(x)
    finally:
        for bn in bns:
            bn.momentum = saved[bn]
        model.eval()
    return len(batches)


def calibration_batches(features, batch: int = 128) -> list[torch.Tensor]:
    """Float32 batches from a (N, frames, n_mels) array or tensor of calibration features."""
    x = torch.as_tensor(features).float()
    return [x[s : s + batch] for s in range(0, len(x), batch)]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval semantics) with every Conv2d→BatchNorm2d pair fused into one Conv2d."""
    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (name_c, conv), (name_b, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                  conv.padding, conv.dilation, conv.groups, bias=True)
                fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
                fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
                setattr(parent, name_c, fused)
                setattr(parent, name_b, nn.Identity())
    return model


def deployable_subnet(ck, spec: SubnetSpec) -> tuple[nn.Module, bool]:
    """The subnet `spec` of checkpoint `ck` as an export ships it: extracted from the supernet
    (built under seed 0, so anything left unset is the same every time), its BatchNorm statistics
    recalibrated on the checkpoint's pinned training examples, then folded. Returns the eval-mode
    model and whether it had BatchNorm to recalibrate (a benchmark that quantizes "the exported
    model" must start from this one, not from a copy of the steps)."""
    torch.manual_seed(0)
    net = extract(ck.supernet(), spec).eval()
    recalibrated = has_batchnorm(net)
    if recalibrated:
        recalibrate_bn(net, calibration_batches(ck.calibration_features()))
    return fold_bn(net).eval(), recalibrated
