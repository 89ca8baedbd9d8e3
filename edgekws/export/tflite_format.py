"""TFLite: rebuild the extracted subnet in TensorFlow ops from its own weights, then convert with
TFLiteConverter — a float model, and a full-integer int8 model (int8 input and output) calibrated
on the pinned pack.

Why rebuild instead of converting the ONNX graph: a graph written directly in NHWC from the
`SubnetSpec`'s static model has no layout Transposes, converts in about a second, and gives the
best parity (onnx2tf pins versions that fight tensorflow-cpu 2.21; litert-torch adds 1.1 GB).
The port is per family (`PORTS`) and a parity test covers each one. TensorFlow is imported only
here, and only when exporting.

Layouts: torch Conv2d weights (out, in, kh, kw) become (kh, kw, in, out); depthwise (C, 1, kh, kw)
become (kh, kw, C, 1); Linear (out, in) becomes (in, out). Padding is explicit (torch pads
symmetrically), so every conv is `VALID` after a PAD.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgekws.errors import EdgeKWSError
from edgekws.fileio import quiet_native_stderr


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _conv_fn(conv: nn.Conv2d) -> Callable:
    import tensorflow as tf

    (ph, pw), (sh, sw) = conv.padding, conv.stride
    bias = tf.constant(_np(conv.bias)) if conv.bias is not None else None
    if conv.groups == 1:
        op, w = tf.nn.conv2d, tf.constant(_np(conv.weight).transpose(2, 3, 1, 0))
    elif conv.groups == conv.in_channels == conv.out_channels:
        op, w = tf.nn.depthwise_conv2d, tf.constant(_np(conv.weight).transpose(2, 3, 0, 1))
    else:
        raise EdgeKWSError(f"grouped convolution with {conv.groups} groups has no TFLite port")

    def f(x):
        if ph or pw:
            x = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
        y = op(x, w, strides=[1, sh, sw, 1], padding="VALID")
        return y + bias if bias is not None else y
    return f


def _dense_fn(lin: nn.Linear) -> Callable:
    import tensorflow as tf

    w, b = tf.constant(_np(lin.weight).T), tf.constant(_np(lin.bias))

    def f(x):
        shape = tf.shape(x)
        if len(x.shape) == 2:
            return tf.matmul(x, w) + b
        flat = tf.reshape(x, [-1, x.shape[-1]])
        return tf.reshape(tf.matmul(flat, w) + b, tf.concat([shape[:-1], [w.shape[1]]], 0))
    return f


def _layer_norm_fn(ln: nn.LayerNorm) -> Callable:
    import tensorflow as tf

    g, b, eps = tf.constant(_np(ln.weight)), tf.constant(_np(ln.bias)), float(ln.eps)

    def f(x):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + eps) * g + b
    return f


def _seq_fn(seq: nn.Sequential) -> Callable:
    """A Sequential of Conv2d / Identity / ReLU (a BN-folded DS-CNN stage)."""
    import tensorflow as tf

    fns = []
    for m in seq:
        if isinstance(m, nn.Conv2d):
            fns.append(_conv_fn(m))
        elif isinstance(m, nn.ReLU):
            fns.append(tf.nn.relu)
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        else:
            raise EdgeKWSError(f"no TFLite port for {type(m).__name__} (fold BatchNorm first)")

    def f(x):
        for fn in fns:
            x = fn(x)
        return x
    return f


def port_dscnn(net: nn.Module, input_shape: tuple[int, int]) -> Callable:
    import tensorflow as tf

    stem = _seq_fn(net.stem)
    blocks = [_seq_fn(b) for b in net.blocks]
    head = _dense_fn(net.head)

    def f(x):  # (1, frames, n_mels) -> (1, classes)
        x = tf.expand_dims(x, -1)
        x = stem(x)
        for b in blocks:
            x = b(x)
        return head(tf.reduce_mean(x, axis=[1, 2]))
    return f


def port_kwt(net: nn.Module, input_shape: tuple[int, int]) -> Callable:
    import tensorflow as tf

    embed = _dense_fn(net.embed)
    cls = tf.constant(_np(net.cls_token))
    pos = tf.constant(_np(net.pos_embed))
    norm = _layer_norm_fn(net.norm)
    head = _dense_fn(net.head)
    layers = []
    for blk in net.blocks:
        a = blk.attn
        layers.append(dict(n1=_layer_norm_fn(blk.norm1), n2=_layer_norm_fn(blk.norm2), q=_dense_fn(a.q), k=_dense_fn(a.k),
                           v=_dense_fn(a.v), proj=_dense_fn(a.proj), fc1=_dense_fn(blk.mlp[0]), fc2=_dense_fn(blk.mlp[2]),
                           hd=a.head_dim))
    frames, _ = input_shape
    t = frames + 1

    def attention(h, L):
        d = h.shape[-1]
        heads = d // L["hd"]

        def split(z):
            return tf.transpose(tf.reshape(z, [1, t, heads, L["hd"]]), [0, 2, 1, 3])
        q, k, v = split(L["q"](h)), split(L["k"](h)), split(L["v"](h))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(L["hd"]))
        out = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        return L["proj"](tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [1, t, d]))

    def f(x):
        x = embed(x)
        x = tf.concat([cls, x], axis=1) + pos
        for L in layers:
            x = x + attention(L["n1"](x), L)
            x = x + L["fc2"](tf.nn.gelu(L["fc1"](L["n2"](x)), approximate=False))
        return head(norm(x)[:, 0])
    return f


PORTS: dict[str, Callable] = {"dscnn": port_dscnn, "dscnn_mlperf": port_dscnn, "kwt": port_kwt}


def _tf():
    """TensorFlow, imported quietly (it logs to stderr at import and on every conversion)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_stderr():  # absl's C++ logger prints its banner and oneDNN notes at import
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def _converter(net: nn.Module, family: str, input_shape: tuple[int, int]):
    tf = _tf()
    if family not in PORTS:
        raise EdgeKWSError(f"family '{family}' has no TFLite port (valid: {', '.join(PORTS)})")
    module = tf.Module()
    module.fn = tf.function(PORTS[family](net.eval(), input_shape), autograph=False,
                            input_signature=[tf.TensorSpec([1, *input_shape], tf.float32, name="features")])
    with quiet_native_stderr():
        return tf.lite.TFLiteConverter.from_concrete_functions([module.fn.get_concrete_function()], module)


def _convert(conv) -> bytes:
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        return conv.convert()


def convert_float(net: nn.Module, family: str, input_shape: tuple[int, int]) -> bytes:
    return _convert(_converter(net, family, input_shape))


def convert_int8(net: nn.Module, family: str, input_shape: tuple[int, int], calibration: np.ndarray) -> bytes:
    """Full-integer int8 (TFLITE_BUILTINS_INT8, int8 input and output), MinMax over `calibration`."""
    tf = _tf()
    conv = _converter(net, family, input_shape)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for x in calibration:
            yield [x[None].astype(np.float32)]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return _convert(conv)
