"""What a subnet costs: parameters, MACs, activation memory and model size, per spec.

- `params`: trainable parameters of the static subnet (what the 250k budget is about).
- `params_deployed`: after folding BatchNorm into the convolutions (each BN's scale and shift
  disappear; a conv without bias gains one) — what a deployed graph stores.
- `macs`: multiply-accumulates of one inference: convolutions, linear layers and the two
  attention matmuls. Element-wise ops, norms, pooling and softmax are not counted.
- `peak_activation_elems`: an estimate of the largest set of activations alive at once, walking
  the graph in execution order: for each op, its input plus its output, plus any residual stream
  held across a Transformer block. Bytes are ×4 for float32 and ×1 for int8. Real runtimes add
  arena alignment and scratch buffers; the profile stage measures the real thing.
- `size_float_bytes` = 4 × deployed params; `size_int8_bytes` = 1 byte per weight, 4 per bias
  (int32) and 4 per output channel for per-channel scales. Flatbuffer/protobuf overhead is
  not included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekws.costs import summarize
from edgekws.models import PARAM_BUDGET, DEFAULT_INPUT, count_params, get_family
from edgekws.spec import SubnetSpec


@dataclass(frozen=True)
class Accounting:
    spec: SubnetSpec
    params: int
    params_deployed: int
    macs: int
    peak_activation_elems: int
    size_float_bytes: int
    size_int8_bytes: int

    @property
    def within_budget(self) -> bool:
        return self.params <= PARAM_BUDGET

    @property
    def peak_activation_bytes_float(self) -> int:
        return 4 * self.peak_activation_elems

    @property
    def peak_activation_bytes_int8(self) -> int:
        return self.peak_activation_elems

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        d["name"] = self.spec.name
        d["within_budget"] = self.within_budget
        d["peak_activation_bytes_float"] = self.peak_activation_bytes_float
        d["peak_activation_bytes_int8"] = self.peak_activation_bytes_int8
        return d


def trace_costs(model, input_shape: tuple[int, int]) -> tuple[int, int]:
    """(MACs, peak activation elements) of one batch-1 inference, from forward hooks on the real
    torch model: the reference the cost table is checked against, and the fallback for a family
    registered without one."""
    import torch
    from torch import nn

    macs = 0
    peak = 0
    held: list[int] = []  # residual streams alive across enclosing blocks
    composites = [m for m in model.modules() if hasattr(m, "macs_of")]
    inside = {id(c) for m in composites for c in m.modules() if c is not m}

    def op_hook(m, inputs, output):
        nonlocal macs, peak
        x = inputs[0]
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            macs += output.numel() * k
        elif isinstance(m, nn.Linear):
            macs += output.numel() * m.in_features
        if hasattr(m, "macs_of"):
            macs += m.macs_of(x)
            live = m.activation_elems(x) + output.numel()
        elif id(m) in inside:
            return
        else:
            live = x.numel() + output.numel()
        peak = max(peak, live + sum(held))

    def push(m, inputs):
        held.append(inputs[0].numel())

    def pop(m, inputs, output):
        held.pop()

    handles = []
    for m in model.modules():
        if hasattr(m, "macs_of") or not list(m.children()):
            handles.append(m.register_forward_hook(op_hook))
        if getattr(m, "keeps_input_alive", False):
            handles.append(m.register_forward_pre_hook(push))
            handles.append(m.register_forward_hook(pop))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return macs, peak


def _int8_size(model) -> int:
    from torch import nn

    total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            total += m.weight.numel() + 4 * m.weight.shape[0]
            if m.bias is not None:
                total += 4 * m.bias.numel()
        elif not list(m.children()):
            total += 4 * sum(p.numel() for p in m.parameters(recurse=False))
    # parameters owned directly by containers (class token, positional embedding)
    for m in model.modules():
        if list(m.children()):
            total += sum(p.numel() for p in m.parameters(recurse=False))
    return total


def account(spec: SubnetSpec, num_classes: int = 12, input_shape: tuple[int, int] | None = None,
            family=None) -> Accounting:
    """Costs of a subnet at a class count and input shape, from the family's cost table (no torch);
    `family` overrides the registered definition (a checkpoint's own architecture arguments,
    `Checkpoint.family_def()`)."""
    fam = family or get_family(spec.family)
    shape = fam.input_shape or input_shape or DEFAULT_INPUT
    if fam.ops is None:
        return traced_account(spec, num_classes, shape, fam)
    fam.space.validate(spec)
    t = summarize(fam.ops(spec, fam.arch, num_classes, shape))
    return Accounting(spec, t.params, t.params_deployed, t.macs, t.peak_activation_elems, 4 * t.params_deployed,
                      t.size_int8_bytes)


def traced_account(spec: SubnetSpec, num_classes: int = 12, input_shape: tuple[int, int] | None = None,
                   family=None) -> Accounting:
    """The same figures from the real torch model: built, BN folded, one traced forward."""
    from edgekws.extract import fold_bn

    fam = family or get_family(spec.family)
    shape = fam.input_shape or input_shape or DEFAULT_INPUT
    net = fam.subnet(spec, num_classes, shape)
    deployed = fold_bn(net)
    macs, peak = trace_costs(deployed, shape)
    n_deployed = count_params(deployed)
    return Accounting(spec, count_params(net), n_deployed, macs, peak, 4 * n_deployed, _int8_size(deployed))
