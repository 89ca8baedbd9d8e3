"""TFLite: lower the extracted subnet to TensorFlow ops (`edgekws.export.lowering`, one lowering
for every family), then convert with TFLiteConverter — a float model, and a full-integer int8
model (int8 input and output) calibrated on the pinned pack.

Why lower instead of converting the ONNX graph: a graph written directly in NHWC from the static
torch module has no layout Transposes, converts in about a second, and gives the best parity
(onnx2tf pins versions that fight tensorflow-cpu 2.21; litert-torch adds 1.1 GB). TensorFlow is
imported only here and in the lowering, and only when exporting.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from torch import nn

from edgekws.export.lowering import lower
from edgekws.fileio import quiet_native_stderr


def _tf():
    """TensorFlow, imported quietly (it logs to stderr at import and on every conversion)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_stderr():  # absl's C++ logger prints its banner and oneDNN notes at import
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def _converter(net: nn.Module, input_shape: tuple[int, int]):
    tf = _tf()
    fn = lower(net.eval(), input_shape)
    module = tf.Module()
    module.fn = tf.function(fn, autograph=False,
                            input_signature=[tf.TensorSpec([1, *input_shape], tf.float32, name="features")])
    with quiet_native_stderr():
        return tf.lite.TFLiteConverter.from_concrete_functions([module.fn.get_concrete_function()], module)


def _convert(conv) -> bytes:
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        return conv.convert()


def convert_float(net: nn.Module, input_shape: tuple[int, int]) -> bytes:
    return _convert(_converter(net, input_shape))


def convert_int8(net: nn.Module, input_shape: tuple[int, int], calibration: np.ndarray) -> bytes:
    """Full-integer int8 (TFLITE_BUILTINS_INT8, int8 input and output), MinMax over `calibration`."""
    tf = _tf()
    conv = _converter(net, input_shape)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for x in calibration:
            yield [x[None].astype(np.float32)]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return _convert(conv)
