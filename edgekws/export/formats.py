"""Export formats as registered pieces (optimum style): each says what it writes for a precision,
how it converts and runs a model, how its int8 variant is quantized, what it records about that,
and what golden outputs it leaves for a C port. `export_subnet` only loops over them.

A format is an object with:
- `name` (`onnx`, `tflite`) and its artefact names (`edgekws.artefacts.model_file`);
- `thresholds`: its default gates (`Thresholds`), overridable per export;
- `build(precision, job) -> Artefact`: convert, run with the real runtime on the pack, and (int8)
  the quantization record; ONNX tries quantization schemes until the gate passes;
- `golden(file, data, feats, folder, index, tools)`: the artefact's expected outputs on the
  golden clips.
Register another with `register_format`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgekws.artefacts import model_file


@dataclass(frozen=True)
class Thresholds:
    float_atol: float = 1e-4  # max |logit difference| of a float artefact vs PyTorch
    int8_agreement: float = 0.98  # top-1 agreement of an int8 artefact with float PyTorch
    int8_max_drop_pt: float = 1.0  # accuracy drop of an int8 artefact vs float PyTorch, points


@dataclass
class Check:
    artefact: str
    metric: str
    value: float
    threshold: float
    passed: bool
    note: str = ""


@dataclass
class Job:
    """What every format's build gets: the folded subnet and the data to validate it on."""

    net: object
    family: str
    shape: tuple[int, int]
    calib: np.ndarray  # int8 calibration features
    calibration_examples: int
    features: np.ndarray  # the pinned pack
    work: Path  # scratch folder
    gate_int8: Callable[[str, np.ndarray], list[Check]]  # (file, outputs) -> checks
    gate_float: Callable[[str, np.ndarray], Check]
    cache: dict = field(default_factory=dict)  # per-format intermediate results (ONNX float bytes)


@dataclass
class Artefact:
    file: str
    data: bytes
    outputs: np.ndarray
    checks: list[Check]
    quantization: dict | None = None  # int8: the record the manifest keeps


class OnnxFormat:
    name = "onnx"
    thresholds = Thresholds()

    def _float(self, job: Job) -> bytes:
        from edgekws.export import onnx_format

        if "onnx_float" not in job.cache:
            job.cache["onnx_float"] = onnx_format.export_float(job.net, job.shape)
        return job.cache["onnx_float"]

    def build(self, precision: str, job: Job) -> Artefact:
        from edgekws.export import onnx_format
        from edgekws.export.runtimes import OnnxRunner

        file = model_file(self.name, precision)
        float_onnx = self._float(job)
        if precision == "float":
            y = OnnxRunner(float_onnx)(job.features)
            return Artefact(file, float_onnx, y, [job.gate_float(file, y)])
        attempts, tried = [], []
        # signed first, whole graph before compute ops only; the gate decides (CPU-dependent)
        for choice in onnx_format.QUANT_CANDIDATES:
            q = onnx_format.quantize_int8(float_onnx, job.calib, choice, job.work)
            y = OnnxRunner(q)(job.features)
            cks = job.gate_int8(file, y)
            attempts.append({"choice": choice.name, "agreement": cks[0].value, "drop_pt": cks[1].value})
            tried.append((choice, q, y, cks))
            if all(c.passed for c in cks):
                break
        # the first scheme that passes; if none does, the nearest miss (most checks passed, then
        # highest agreement, then smallest drop) is the one reported — not merely the last tried
        choice, q, y, cks = max(tried, key=lambda t: (sum(c.passed for c in t[3]), t[3][0].value, -t[3][1].value))
        for c in cks:
            c.note = f"{choice.name} ({len(attempts)} tried)"
        quant = {"scheme": asdict(choice), "attempts": attempts, "format": "QDQ", "per_channel": True,
                 "calibration_examples": job.calibration_examples, **onnx_format.io_quantization(q)}
        return Artefact(file, q, y, cks, quant)

    def golden(self, file: str, data: bytes, feats: np.ndarray, folder: Path, index: dict, tools: dict) -> None:
        from edgekws.export.runtimes import OnnxRunner

        stem = file.rsplit(".", 1)[0].replace("model_", "")
        np.save(folder / f"expected_onnx_{stem}.npy", OnnxRunner(data)(feats))
        index["expected"][file] = f"expected_onnx_{stem}.npy (float32 logits)"


class TFLiteFormat:
    name = "tflite"
    thresholds = Thresholds()

    def build(self, precision: str, job: Job) -> Artefact:
        from edgekws.export import tflite_format
        from edgekws.export.runtimes import TFLiteRunner

        file = model_file(self.name, precision)
        if precision == "float":
            data = tflite_format.convert_float(job.net, job.shape)
            y = TFLiteRunner(data)(job.features)
            return Artefact(file, data, y, [job.gate_float(file, y)])
        data = tflite_format.convert_int8(job.net, job.shape, job.calib)
        runner = TFLiteRunner(data)
        y = runner(job.features)
        quant = {"scheme": "full-integer int8 (TFLITE_BUILTINS_INT8), per-channel weights",
                 "calibration_examples": job.calibration_examples, "runtime": runner.runtime,
                 "input": {"scale": runner.input_quant[0], "zero_point": runner.input_quant[1], "dtype": "int8"},
                 "output": {"scale": runner.output_quant[0], "zero_point": runner.output_quant[1], "dtype": "int8"}}
        return Artefact(file, data, y, job.gate_int8(file, y), quant)

    def golden(self, file: str, data: bytes, feats: np.ndarray, folder: Path, index: dict, tools: dict) -> None:
        from edgekws.export.runtimes import TFLiteRunner

        r = TFLiteRunner(data)
        if file.startswith("model_int8"):
            q_in = np.stack([r.quantize_input(x) for x in feats])
            np.save(folder / "input_tflite_int8.npy", q_in)
            np.save(folder / "expected_tflite_int8.npy", np.stack([r.raw(x) for x in q_in]))
            index["expected"][file] = "input_tflite_int8.npy -> expected_tflite_int8.npy (raw int8)"
            dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(r.runtime, "tensorflow-cpu")
            index["int8_note"] = (f"int8 outputs were produced by {dist} {tools.get(dist, '?')} and onnxruntime "
                                  f"{tools.get('onnxruntime', '?')}; with the same runtime versions they are bit-exact on "
                                  "x86 and aarch64 (measured: benchmarks/arm_parity.py); other versions may round int8 "
                                  "differently by several steps (benchmarks/runtime_versions.py), so compare top-1 there")
        else:
            np.save(folder / "expected_tflite_float.npy", r(feats))
            index["expected"][file] = "expected_tflite_float.npy (float32 logits)"


EXPORT_FORMATS: dict[str, object] = {}


def register_format(fmt) -> object:
    EXPORT_FORMATS[fmt.name] = fmt
    return fmt


register_format(OnnxFormat())
register_format(TFLiteFormat())


@dataclass
class ValidationReport:
    """Every gate of one export, rendered as a table by the CLI and stored in the manifest."""

    pack_examples: int
    pytorch_float_accuracy: float
    accuracy: dict[str, float]
    thresholds: dict
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"pack_examples": self.pack_examples, "pytorch_float_accuracy": round(self.pytorch_float_accuracy, 4),
                "accuracy": self.accuracy, "thresholds": self.thresholds, "checks": [asdict(c) for c in self.checks],
                "passed": self.passed}
