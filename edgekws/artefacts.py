"""The names of an export folder's files, in one place.

Export writes them; profile, bench and the device lab read them. A format is the file type
(`onnx`, `tflite`); a runtime is what runs it on a device (`onnxruntime`, `litert`); a precision is
`float` or `int8`. Everything that needs a file name asks this module rather than spelling it.
"""

from __future__ import annotations

FORMATS = ("onnx", "tflite")
PRECISIONS = ("float", "int8")
RUNTIME_FORMAT = {"litert": "tflite", "onnxruntime": "onnx"}  # which format each device runtime runs
GOLDEN_DIR = "golden"
GOLDEN_INPUT = f"{GOLDEN_DIR}/features.npy"  # the golden clips' reference features


def model_file(fmt: str, precision: str) -> str:
    """`model_int8.tflite`, `model_float.onnx`, ..."""
    return f"model_{precision}.{fmt}"


def runtime_file(runtime: str, precision: str) -> str:
    """The model file a device runtime runs at a precision."""
    return model_file(RUNTIME_FORMAT[runtime], precision)


def expected_outputs(fmt: str, precision: str) -> str:
    """Where export records an artefact's outputs on the golden clips (relative to the folder)."""
    return f"{GOLDEN_DIR}/expected_{fmt}_{precision}.npy"


# (runtime, precision) -> file, and runtime -> (float file, int8 file): the tables bench and
# profile iterate over.
PRECISION_FILE = {(rt, p): runtime_file(rt, p) for rt in RUNTIME_FORMAT for p in PRECISIONS}
RUNTIME_FILES = {rt: tuple(runtime_file(rt, p) for p in PRECISIONS) for rt in RUNTIME_FORMAT}
