"""Run exported models with the real runtimes: ONNX Runtime, and LiteRT for TFLite (falling back
to tflite_runtime, then TensorFlow's own interpreter). Inputs and outputs are float32; int8
TFLite models are fed through their input scale/zero point and dequantized on the way out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekws.errors import EdgeKWSError
from edgekws.fileio import quiet_native_stderr


def tflite_interpreter_class():
    """(Interpreter class, runtime name): LiteRT first, then tflite_runtime, then tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        raise EdgeKWSError("no TFLite runtime: install ai-edge-litert (or tflite-runtime, or tensorflow)") from None


class TFLiteRunner:
    def __init__(self, model: Path | bytes, threads: int = 1):
        cls, self.runtime = tflite_interpreter_class()
        kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        with quiet_native_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
            self.interp = cls(num_threads=threads, **kwargs)
            self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    @property
    def input_quant(self) -> tuple[float, int]:
        s, z = self.inp["quantization"]
        return float(s), int(z)

    @property
    def output_quant(self) -> tuple[float, int]:
        s, z = self.out["quantization"]
        return float(s), int(z)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        s, z = self.input_quant
        info = np.iinfo(self.inp["dtype"])
        return np.clip(np.round(x / s) + z, info.min, info.max).astype(self.inp["dtype"])

    def raw(self, x: np.ndarray) -> np.ndarray:
        """One example in the model's own input dtype -> raw output (int8 for int8 models)."""
        self.interp.set_tensor(self.inp["index"], x[None] if x.ndim == len(self.inp["shape"]) - 1 else x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])[0].copy()

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """(N, frames, n_mels) float32 -> (N, classes) float32 logits."""
        quantized = self.inp["dtype"] != np.float32
        outs = []
        for x in feats:
            x = self.quantize_input(x) if quantized else x.astype(np.float32)
            outs.append(self.raw(x))
        y = np.stack(outs)
        if self.out["dtype"] != np.float32:
            s, z = self.output_quant
            y = (y.astype(np.float32) - z) * s
        return y


class OnnxRunner:
    def __init__(self, model: Path | bytes, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(model)
        self.sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.sess.get_inputs()[0].name

    def __call__(self, feats: np.ndarray, batch: int = 256) -> np.ndarray:
        outs = [self.sess.run(None, {self.input_name: feats[s : s + batch].astype(np.float32)})[0]
                for s in range(0, len(feats), batch)]
        return np.concatenate(outs)
