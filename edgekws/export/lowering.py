"""One lowering from an extracted static torch module to a TensorFlow function, for every family.

Why not a converter library: litert-torch (torch → TFLite through torch.export) adds ~1.1 GB to
the environment and would put a second copy of the conversion stack under our gates; onnx2tf
pins versions that fight tensorflow-cpu 2.21. Our static subnets use a dozen op types, so a
table of op-level lowerings over a `torch.fx` trace is small, runs offline, and writes NHWC
graphs with no layout Transposes (the measured comparison is in the README, Stage 4).

How it works:
1. `torch.fx.symbolic_trace` the static (BN-folded, eval) module; shapes come from one forward on
   a (1, frames, n_mels) example (`ShapeProp`), so every shape is static and shape arithmetic
   (`x.shape[0]`) folds to Python numbers.
2. Each node is lowered by the table: `nn.Module` leaves by type (`register_module`), functions
   and tensor methods by target (`register_function`). A new layer type registers its lowering in
   its own file; nothing here names a family.
3. **Layout pass.** Every value is a TF tensor plus `dims`: which torch dim each TF axis holds
   (torch dims missing from `dims` are size 1). Convolutions want NHWC (`dims = (0, 2, 3, 1)`),
   `transpose`/`unsqueeze`/`mean` only relabel `dims`, and a value is materialised in another
   layout only when an op needs it — by `expand_dims`/`reshape` when only size-1 axes move,
   otherwise by one `transpose`. So `x.unsqueeze(1)` into a conv is one EXPAND_DIMS, a
   global average pool then `flatten` is one MEAN, and `q @ k.transpose(-1, -2)` is a matmul with
   `transpose_b`.

Layouts of weights: torch Conv2d (out, in, kh, kw) becomes (kh, kw, in, out); depthwise
(C, 1, kh, kw) becomes (kh, kw, C, 1); Linear (out, in) becomes (in, out). Padding is explicit
(torch pads symmetrically), so every conv is `VALID` after a PAD.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from edgekws.errors import EdgeKWSError


@dataclass(frozen=True)
class Value:
    """A lowered tensor: `tf` holds the torch tensor of shape `shape` with TF axis i being torch
    dim `dims[i]` (torch dims not in `dims` have size 1)."""

    tf: Any
    dims: tuple[int, ...]
    shape: tuple[int, ...]  # the torch shape

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def order_preserving(self) -> bool:
        """The TF tensor's elements are in torch's contiguous order (reshape-compatible)."""
        big = [d for d in self.dims if self.shape[d] != 1]
        return big == sorted(big)


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


NHWC = (0, 2, 3, 1)

# --------------------------------------------------------------------------------------------
# Registry


MODULE_LOWERINGS: dict[type, Callable] = {}
FUNCTION_LOWERINGS: dict[Any, Callable] = {}


def register_module(*types: type) -> Callable:
    """`fn(module) -> apply`, with `apply(lowerer, *values) -> Value`, lowers leaf modules of these
    types. `fn` runs once per module when the lowering is built (weights become TF constants
    there, outside any traced function); `apply` runs when the TF function is traced."""
    def deco(fn):
        for t in types:
            MODULE_LOWERINGS[t] = fn
        return fn
    return deco


def register_function(*targets) -> Callable:
    """`fn(lowerer, node, *args, **kwargs) -> Value` lowers calls of these functions, or of tensor
    methods named by a string."""
    def deco(fn):
        for t in targets:
            FUNCTION_LOWERINGS[t] = fn
        return fn
    return deco


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------
# Layout


def to_layout(v: Value, dims: tuple[int, ...]) -> Any:
    """`v`'s TF tensor with its axes holding the torch dims `dims` (same torch shape)."""
    import tensorflow as tf

    if tuple(v.dims) == tuple(dims):
        return v.tf
    big_now = [d for d in v.dims if v.shape[d] != 1]
    big_want = [d for d in dims if v.shape[d] != 1]
    target = [v.shape[d] for d in dims]
    if big_now == big_want:  # only size-1 axes move: no data movement
        if len(dims) == len(v.dims) + 1:
            added = [i for i, d in enumerate(dims) if d not in v.dims]
            if len(added) == 1 and [d for d in dims if d in v.dims] == list(v.dims):
                return tf.expand_dims(v.tf, added[0] if added[0] < len(v.dims) else -1)
        return tf.reshape(v.tf, target)
    # Bring every torch dim into the TF tensor, permute, then drop what `dims` leaves out.
    full = v.tf
    have = list(v.dims)
    missing = [d for d in range(v.rank) if d not in have]
    if missing:
        have = have + missing
        full = tf.reshape(full, [v.shape[d] for d in have])
    keep = [d for d in dims] + [d for d in have if d not in dims]
    full = tf.transpose(full, [have.index(d) for d in keep])
    if len(keep) != len(dims):
        full = tf.reshape(full, target)
    return full


def plain(v: Value) -> Any:
    """The TF tensor in torch's own layout."""
    return to_layout(v, identity(v.rank))


def _norm_dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


# --------------------------------------------------------------------------------------------
# The interpreter


class _Tracer(fx.Tracer):
    """Leaf modules are exactly those with a registered lowering; the rest is traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in MODULE_LOWERINGS


class Lowerer:
    """Lowers one static module; `fn(x)` is the TF function of a (1, frames, n_mels) input."""

    def __init__(self, net: nn.Module, input_shape: tuple[int, int]):
        from torch.fx.passes.shape_prop import ShapeProp

        self.net = net.eval()
        tracer = _Tracer()
        try:
            graph = tracer.trace(self.net)
        except Exception as exc:  # a model fx cannot trace is a port that does not exist yet
            raise EdgeKWSError(f"{type(net).__name__} cannot be traced for TFLite lowering: {str(exc).splitlines()[0]}") from None
        self.gm = fx.GraphModule(self.net, graph)
        with torch.no_grad():
            ShapeProp(self.gm).propagate(torch.zeros(1, *input_shape))
        self.modules = dict(self.gm.named_modules())
        self._check_supported()
        self.applies = {n: MODULE_LOWERINGS[type(self.modules[n.target])](self.modules[n.target])
                        for n in self.gm.graph.nodes if n.op == "call_module"}

    def _check_supported(self) -> None:
        missing = []
        for n in self.gm.graph.nodes:  # modules are leaves only when registered (`_Tracer`)
            if n.op in ("call_function", "call_method") and n.target not in FUNCTION_LOWERINGS and _meta_shape(n) is not None:
                missing.append(getattr(n.target, "__name__", str(n.target)))
        if missing:
            raise EdgeKWSError(f"no TFLite lowering for {', '.join(sorted(set(missing)))} "
                               "(register one in edgekws.export.lowering)")

    def shape_of(self, node: fx.Node) -> tuple[int, ...]:
        return _meta_shape(node)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The torch shape of the node being lowered (from the shape propagation)."""
        return _meta_shape(self.current)

    def constant(self, t: torch.Tensor) -> Value:
        import tensorflow as tf

        return Value(tf.constant(_np(t)), identity(t.dim()), tuple(t.shape))

    def fn(self, x) -> Any:
        env: dict[fx.Node, Any] = {}

        def load(a):
            return fx.node.map_arg(a, lambda n: env[n])

        out = None
        for n in self.gm.graph.nodes:
            self.current = n
            if n.op == "placeholder":
                env[n] = Value(x, identity(len(self.shape_of(n))), self.shape_of(n))
            elif n.op == "get_attr":
                obj = self.gm
                for part in n.target.split("."):
                    obj = getattr(obj, part)
                env[n] = self.constant(obj) if isinstance(obj, torch.Tensor) else obj
            elif n.op == "call_module":
                env[n] = self.applies[n](self, *load(n.args))
            elif n.op in ("call_function", "call_method"):
                args, kwargs = load(n.args), load(n.kwargs)
                if _meta_shape(n) is None or n.target not in FUNCTION_LOWERINGS:
                    env[n] = _fold(n, args, kwargs)  # shape arithmetic: plain Python values
                else:
                    env[n] = FUNCTION_LOWERINGS[n.target](self, n, *args, **kwargs)
            elif n.op == "output":
                out = load(n.args[0])
        if not isinstance(out, Value):
            raise EdgeKWSError("TFLite lowering: the model must return one tensor")
        return plain(out)


def _meta_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _fold(n: fx.Node, args, kwargs):
    """A call on Python values (e.g. `x.shape[0]`), evaluated here; `.shape` of a lowered value is
    its static torch shape."""
    if n.op == "call_function" and n.target is getattr and isinstance(args[0], Value):
        if args[1] == "shape":
            return torch.Size(args[0].shape)
        raise EdgeKWSError(f"TFLite lowering: attribute '{args[1]}' of a tensor is not supported")
    if n.op == "call_method" and isinstance(args[0], Value):
        if n.target == "size":
            return torch.Size(args[0].shape) if len(args) == 1 else args[0].shape[args[1]]
        if n.target == "dim":
            return args[0].rank
        raise EdgeKWSError(f"no TFLite lowering for Tensor.{n.target}")
    if any(isinstance(a, Value) for a in (*args, *kwargs.values())):
        raise EdgeKWSError(f"no TFLite lowering for {getattr(n.target, '__name__', n.target)}")
    if n.op == "call_method":
        return getattr(args[0], n.target)(*args[1:], **kwargs)
    return n.target(*args, **kwargs)


def lower(net: nn.Module, input_shape: tuple[int, int]) -> Callable:
    """The TF function (1, frames, n_mels) -> (1, classes) computing `net` (eval semantics)."""
    return Lowerer(net, input_shape).fn


# --------------------------------------------------------------------------------------------
# Modules


@register_module(nn.Conv2d)
def _conv2d(conv: nn.Conv2d) -> Callable:
    import tensorflow as tf

    if conv.dilation not in ((1, 1), 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise EdgeKWSError("TFLite lowering: Conv2d with dilation, string padding or non-zero padding mode")
    (ph, pw), (sh, sw) = conv.padding, conv.stride
    bias = tf.constant(_np(conv.bias)) if conv.bias is not None else None
    if conv.groups == 1:
        op, w = tf.nn.conv2d, tf.constant(_np(conv.weight).transpose(2, 3, 1, 0))
    elif conv.groups == conv.in_channels == conv.out_channels:
        op, w = tf.nn.depthwise_conv2d, tf.constant(_np(conv.weight).transpose(2, 3, 0, 1))
    else:
        raise EdgeKWSError(f"grouped convolution with {conv.groups} groups has no TFLite lowering")

    def apply(lw: Lowerer, x: Value) -> Value:
        h = to_layout(x, NHWC)
        if ph or pw:
            h = tf.pad(h, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
        y = op(h, w, strides=[1, sh, sw, 1], padding="VALID")
        return Value(y + bias if bias is not None else y, NHWC, lw.out_shape)
    return apply


@register_module(nn.Linear)
def _linear(lin: nn.Linear) -> Callable:
    import tensorflow as tf

    w = tf.constant(_np(lin.weight).T)
    b = tf.constant(_np(lin.bias)) if lin.bias is not None else None

    def apply(lw: Lowerer, x: Value) -> Value:
        h = plain(x)
        if x.rank == 2:
            y = tf.matmul(h, w)
        else:
            y = tf.reshape(tf.matmul(tf.reshape(h, [-1, x.shape[-1]]), w), [*x.shape[:-1], lin.out_features])
        return Value(y + b if b is not None else y, identity(x.rank), lw.out_shape)
    return apply


@register_module(nn.LayerNorm)
def _layer_norm(ln: nn.LayerNorm) -> Callable:
    import tensorflow as tf

    if len(ln.normalized_shape) != 1:
        raise EdgeKWSError("TFLite lowering: LayerNorm over more than the last dim")
    g = tf.constant(_np(ln.weight)) if ln.weight is not None else None
    b = tf.constant(_np(ln.bias)) if ln.bias is not None else None
    eps = float(ln.eps)

    def apply(lw: Lowerer, x: Value) -> Value:
        h = plain(x)
        mean = tf.reduce_mean(h, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(h - mean), axis=-1, keepdims=True)
        y = (h - mean) * tf.math.rsqrt(var + eps)
        if g is not None:
            y = y * g
        if b is not None:
            y = y + b
        return Value(y, identity(x.rank), x.shape)
    return apply


def _relu_value(x: Value) -> Value:
    import tensorflow as tf

    return Value(tf.nn.relu(x.tf), x.dims, x.shape)


def _gelu_value(x: Value, approximate: str) -> Value:
    import tensorflow as tf

    return Value(tf.nn.gelu(x.tf, approximate=approximate == "tanh"), x.dims, x.shape)


@register_module(nn.ReLU)
def _relu(m: nn.ReLU) -> Callable:
    return lambda lw, x: _relu_value(x)


@register_module(nn.GELU)
def _gelu(m: nn.GELU) -> Callable:
    return lambda lw, x: _gelu_value(x, m.approximate)


@register_module(nn.Identity, nn.Dropout)
def _identity(m: nn.Module) -> Callable:
    return lambda lw, x: x  # eval semantics


@register_module(nn.AdaptiveAvgPool2d)
def _global_pool(m: nn.AdaptiveAvgPool2d) -> Callable:
    if m.output_size not in (1, (1, 1)):
        raise EdgeKWSError("TFLite lowering: AdaptiveAvgPool2d to a size other than 1")
    return lambda lw, x: _reduce_mean(x, (2, 3), keepdim=True)


# --------------------------------------------------------------------------------------------
# Functions and tensor methods


def _reduce_mean(x: Value, dims, keepdim: bool) -> Value:
    """Mean over torch dims: reduced axes drop out of the TF tensor either way; with keepdim they
    stay in the torch shape as size 1 (so a following flatten needs no op)."""
    import tensorflow as tf

    dims = sorted(_norm_dim(d, x.rank) for d in (dims if isinstance(dims, (tuple, list)) else (dims,)))
    axes = [i for i, d in enumerate(x.dims) if d in dims]
    y = tf.reduce_mean(x.tf, axis=axes) if axes else x.tf
    kept = [d for d in x.dims if d not in dims]
    if keepdim:
        return Value(y, tuple(kept), tuple(1 if d in dims else s for d, s in enumerate(x.shape)))
    renumber = {d: i for i, d in enumerate(d for d in range(x.rank) if d not in dims)}
    return Value(y, tuple(renumber[d] for d in kept), tuple(s for d, s in enumerate(x.shape) if d not in dims))


@register_function(torch.mean, "mean")
def _mean(lw: Lowerer, n: fx.Node, x: Value, dim=None, keepdim: bool = False, **kw) -> Value:
    return _reduce_mean(x, tuple(range(x.rank)) if dim is None else dim, keepdim)


def _binary(tf_op: Callable, a, b) -> Value:
    if isinstance(a, Value) and isinstance(b, Value):
        if a.shape == b.shape:
            return Value(tf_op(a.tf, to_layout(b, a.dims)), a.dims, a.shape)
        shape = tuple(torch.broadcast_shapes(a.shape, b.shape))
        return Value(tf_op(plain(a), plain(b)), identity(len(shape)), shape)
    if isinstance(a, Value):
        return Value(tf_op(a.tf, float(b)), a.dims, a.shape)
    return Value(tf_op(float(a), b.tf), b.dims, b.shape)


@register_function(operator.add, torch.add, "add")
def _add(lw, n, a, b):
    return _binary(lambda x, y: x + y, a, b)


@register_function(operator.sub, torch.sub, "sub")
def _sub(lw, n, a, b):
    return _binary(lambda x, y: x - y, a, b)


@register_function(operator.mul, torch.mul, "mul")
def _mul(lw, n, a, b):
    return _binary(lambda x, y: x * y, a, b)


@register_function(operator.truediv, torch.div, "div")
def _div(lw, n, a, b):
    return _binary(lambda x, y: x / y, a, b)


@register_function(torch.relu, F.relu, "relu")
def _relu_fn(lw, n, x, inplace: bool = False):
    return _relu_value(x)


@register_function(F.gelu)
def _gelu_fn(lw, n, x, approximate: str = "none"):
    return _gelu_value(x, approximate)


@register_function(torch.softmax, F.softmax, "softmax")
def _softmax(lw, n, x: Value, dim: int, *rest, **kw) -> Value:
    import tensorflow as tf

    d = _norm_dim(dim, x.rank)
    if d in x.dims and x.shape[d] != 1:
        return Value(tf.nn.softmax(x.tf, axis=x.dims.index(d)), x.dims, x.shape)
    return Value(tf.nn.softmax(plain(x), axis=d), identity(x.rank), x.shape)


@register_function("transpose", torch.transpose)
def _transpose(lw, n, x: Value, d0: int, d1: int) -> Value:
    """A relabelling of dims: no op until something needs the data moved."""
    d0, d1 = _norm_dim(d0, x.rank), _norm_dim(d1, x.rank)
    swap = {d0: d1, d1: d0}
    shape = list(x.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return Value(x.tf, tuple(swap.get(d, d) for d in x.dims), tuple(shape))


@register_function("permute", torch.permute)
def _permute(lw, n, x: Value, *perm) -> Value:
    perm = tuple(perm[0]) if len(perm) == 1 and isinstance(perm[0], (tuple, list)) else perm
    perm = tuple(_norm_dim(p, x.rank) for p in perm)
    where = {old: new for new, old in enumerate(perm)}
    return Value(x.tf, tuple(where[d] for d in x.dims), tuple(x.shape[p] for p in perm))


@register_function("unsqueeze", torch.unsqueeze)
def _unsqueeze(lw, n, x: Value, dim: int) -> Value:
    d = dim + x.rank + 1 if dim < 0 else dim
    return Value(x.tf, tuple(e + 1 if e >= d else e for e in x.dims), (*x.shape[:d], 1, *x.shape[d:]))


def _reshaped(x: Value, shape: tuple[int, ...]) -> Value:
    import tensorflow as tf

    if x.order_preserving:
        src = x.tf
        now = tuple(x.shape[d] for d in x.dims)
    else:
        src, now = plain(x), x.shape
    y = src if tuple(now) == tuple(shape) else tf.reshape(src, list(shape))
    return Value(y, identity(len(shape)), tuple(shape))


@register_function("reshape", "view", torch.reshape)
def _reshape(lw, n, x: Value, *shape) -> Value:
    return _reshaped(x, lw.shape_of(n))


@register_function(torch.flatten, "flatten")
def _flatten(lw, n, x: Value, *a, **kw) -> Value:
    return _reshaped(x, lw.shape_of(n))


@register_function("contiguous")
def _contiguous(lw, n, x: Value) -> Value:
    return x


@register_function("expand")
def _expand(lw, n, x: Value, *sizes) -> Value:
    import tensorflow as tf

    shape = lw.shape_of(n)
    if shape == x.shape:
        return x
    return Value(tf.broadcast_to(plain(x), list(shape)), identity(len(shape)), shape)


@register_function(torch.cat, torch.concat)
def _cat(lw, n, tensors, dim: int = 0) -> Value:
    import tensorflow as tf

    rank = tensors[0].rank
    d = _norm_dim(dim, rank)
    return Value(tf.concat([plain(t) for t in tensors], axis=d), identity(rank), lw.shape_of(n))


@register_function(torch.matmul, operator.matmul, "matmul")
def _matmul(lw, n, a: Value, b: Value) -> Value:
    """Batched matmul; an operand whose last two torch dims are swapped in TF is passed with
    `transpose_a/b` instead of being transposed, and when it must move anyway the layout that
    keeps TF's innermost axis in place is chosen."""
    import tensorflow as tf

    def operand(v: Value):
        ident = identity(v.rank)
        swapped = (*ident[:-2], ident[-1], ident[-2])
        if v.dims == ident:
            return v.tf, False
        if v.dims == swapped:
            return v.tf, True
        inner = v.dims[-1] if v.dims else None
        if inner == swapped[-1] and inner != ident[-1]:
            return to_layout(v, swapped), True
        return to_layout(v, ident), False

    (ta, adj_a), (tb, adj_b) = operand(a), operand(b)
    shape = lw.shape_of(n)
    return Value(tf.matmul(ta, tb, transpose_a=adj_a, transpose_b=adj_b), identity(len(shape)), shape)


@register_function(operator.getitem)
def _getitem(lw, n, x, index) -> Value:
    if not isinstance(x, Value):
        return x[index]
    y = plain(x)[index]
    shape = lw.shape_of(n)
    return Value(y, identity(len(shape)), shape)

@register_function(torch.sigmoid, "sigmoid")
def _sigmoid(lw, n, x: Value) -> Value:
    import tensorflow as tf

    return Value(tf.math.sigmoid(x.tf), x.dims, x.shape)


@register_function(torch.tanh, "tanh")
def _tanh(lw, n, x: Value) -> Value:
    import tensorflow as tf

    return Value(tf.math.tanh(x.tf), x.dims, x.shape)
