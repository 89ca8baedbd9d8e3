"""What each layer type costs, from shapes alone: the per-module-type table accounting is built on.

A family describes a subnet as the ops its *deployed* graph runs, in execution order (BatchNorm
already folded into the convolution before it), each made by one function of this table from the
input shape — no torch, no model built, no forward run, so `edgekws info` and a search over
thousands of specs cost microseconds per spec. A new layer type is one more function returning
an `Op` (its own file can define it); `summarize` adds the ops up.

The rules (kept equal to a traced forward of the real torch model by a test for every family):
- MACs: convolutions (outputs × kernel area × in/groups), linear layers (outputs × in), the two
  attention matmuls; element-wise ops, norms, pooling and softmax are free.
- live activations of an op: its input plus its output (an attention block: input, q, k, v and one
  score matrix per head, plus output), plus every residual stream held by enclosing blocks; the
  peak over ops is the estimate.
- `params`: trainable parameters of the (unfolded) subnet; `params_deployed`: after folding.
- int8 bytes: 1 per conv/linear weight, 4 per output channel (per-channel scale) and 4 per bias
  (int32); 4 per parameter of other layers (norms); 1 per element of free parameters (class
  token, positional embedding).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Op:
    kind: str
    in_elems: int
    out_elems: int
    macs: int = 0
    params: int = 0  # as trained (BatchNorm separate)
    params_deployed: int = 0  # as deployed (BatchNorm folded in)
    int8_bytes: int = 0
    live_extra: int | None = None  # composite ops: live elements other than the output
    held: int = 0  # residual streams alive around this op

    @property
    def live(self) -> int:
        return (self.in_elems if self.live_extra is None else self.live_extra) + self.out_elems + self.held


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_bn(cin: int, cout: int, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], groups: int = 1, bias: bool = False, bn: bool = True
              ) -> tuple[list[Op], tuple[int, int]]:
    """Conv2d (+ BatchNorm2d folded into it, left as an identity op) → ([ops], output hw)."""
    h, w = (conv_out(hw[i], kernel[i], stride[i], padding[i]) for i in range(2))
    out = cout * h * w
    weights = cout * (cin // groups) * kernel[0] * kernel[1]
    trained = weights + (cout if bias else 0) + (2 * cout if bn else 0)
    deployed_bias = bias or bn
    deployed = weights + (cout if deployed_bias else 0)
    # Three kinds, because their kernels cost differently per MAC (most of all in int8: a 1-channel
    # stem convolution vectorises badly): depthwise, pointwise (1×1) and other dense convolutions.
    kind = ("dwconv2d" if groups > 1 and groups == cin else "pwconv2d" if tuple(kernel) == (1, 1) and groups == 1
            else "conv2d")
    conv = Op(kind, cin * hw[0] * hw[1], out, macs=out * kernel[0] * kernel[1] * cin // groups, params=trained,
              params_deployed=deployed, int8_bytes=weights + 4 * cout + (4 * cout if deployed_bias else 0))
    ops = [conv] + ([Op("identity", out, out)] if bn else [])
    return ops, (h, w)


def elementwise(kind: str, elems: int, held: int = 0) -> Op:
    """ReLU, GELU, dropout, identity: no parameters, no MACs."""
    return Op(kind, elems, elems, held=held)


def pool(channels: int, hw: tuple[int, int]) -> Op:
    """Global average pooling to one value per channel."""
    return Op("avgpool", channels * hw[0] * hw[1], channels)


def linear(cin: int, cout: int, tokens: int = 1, bias: bool = True, held: int = 0) -> Op:
    weights = cin * cout
    n = weights + (cout if bias else 0)
    return Op("linear", tokens * cin, tokens * cout, macs=tokens * cout * cin, params=n, params_deployed=n,
              int8_bytes=weights + 4 * cout + (4 * cout if bias else 0), held=held)


def layernorm(dim: int, tokens: int, held: int = 0) -> Op:
    return Op("layernorm", tokens * dim, tokens * dim, params=2 * dim, params_deployed=2 * dim, int8_bytes=8 * dim,
              held=held)


def attention(dim: int, tokens: int, head_dim: int, held: int = 0) -> list[Op]:
    """Multi-head self-attention from four Linear layers: the projections' MACs and parameters,
    and the block's own two matmuls and peak (input, q, k, v, one score matrix per head)."""
    projections = [linear(dim, dim, tokens) for _ in range(4)]
    own = Op("attention", tokens * dim, tokens * dim, macs=2 * tokens * tokens * dim,
             live_extra=4 * tokens * dim + (dim // head_dim) * tokens * tokens, held=held)
    # the projections run inside the block: their MACs and weights count, their activations are
    # part of the block's own peak
    inner = [Op(p.kind, 0, 0, p.macs, p.params, p.params_deployed, p.int8_bytes, live_extra=0) for p in projections]
    return [*inner, own]


def free_parameter(elems: int) -> Op:
    """A parameter used directly (class token, positional embedding): no op of its own."""
    return Op("parameter", 0, 0, params=elems, params_deployed=elems, int8_bytes=elems, live_extra=0)


@dataclass(frozen=True)
class Totals:
    params: int
    params_deployed: int
    macs: int
    peak_activation_elems: int
    size_int8_bytes: int


def summarize(ops: list[Op]) -> Totals:
    return Totals(params=sum(o.params for o in ops), params_deployed=sum(o.params_deployed for o in ops),
                  macs=sum(o.macs for o in ops), peak_activation_elems=max((o.live for o in ops), default=0),
                  size_int8_bytes=sum(o.int8_bytes for o in ops))
