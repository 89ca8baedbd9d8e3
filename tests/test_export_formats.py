"""Export formats are registered pieces: a format defined in this file alone — TorchScript, run by
torch.jit — goes through the same gates, manifest and golden vectors as ONNX and TFLite, with its
own thresholds, and no edit anywhere else."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from edgekws.export import export_subnet
from edgekws.export.formats import EXPORT_FORMATS, Artefact, Job, Thresholds, register_format


class TorchScriptFormat:
    name = "torchscript"
    thresholds = Thresholds(float_atol=1e-6)  # same kernels as PyTorch: a tighter gate than ONNX/TFLite

    @staticmethod
    def _run(data: bytes, x: np.ndarray) -> np.ndarray:
        module = torch.jit.load(io.BytesIO(data))
        with torch.no_grad():
            return module(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()

    def build(self, precision: str, job: Job) -> Artefact:
        if precision != "float":
            from edgekws.errors import EdgeKWSError

            raise EdgeKWSError("torchscript exports float only")
        buf = io.BytesIO()
        torch.jit.save(torch.jit.trace(job.net.eval(), torch.zeros(1, *job.shape)), buf)
        data = buf.getvalue()
        y = self._run(data, job.features)
        file = f"model_float.{self.name}"
        return Artefact(file, data, y, [job.gate_float(file, y)])

    def golden(self, file, data, feats, folder, index, tools) -> None:
        np.save(folder / "expected_torchscript_float.npy", self._run(data, feats))
        index["expected"][file] = "expected_torchscript_float.npy (float32 logits)"


@pytest.fixture()
def torchscript():
    fmt = register_format(TorchScriptFormat())
    yield fmt
    del EXPORT_FORMATS[fmt.name]


def test_a_format_registered_in_one_file_exports_with_gates(torchscript, tmp_path):
    res = export_subnet(width=0.25, out=tmp_path, formats=("torchscript", "onnx"), precisions=("float",))
    folder = res.out_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    checks = {c["artefact"]: c for c in manifest["validation"]["checks"]}
    assert set(checks) == {"model_float.torchscript", "model_float.onnx"}
    assert checks["model_float.torchscript"]["threshold"] == 1e-6 and checks["model_float.torchscript"]["passed"]
    assert checks["model_float.onnx"]["threshold"] == 1e-4  # each format's own default
    assert manifest["validation"]["thresholds"]["torchscript"]["float_atol"] == 1e-6
    assert "model_float.torchscript" in manifest["files"]
    golden = json.loads((folder / "golden" / "index.json").read_text())
    assert golden["expected"]["model_float.torchscript"].startswith("expected_torchscript_float.npy")
    expected = np.load(folder / "golden" / "expected_torchscript_float.npy")
    assert np.allclose(expected, np.load(folder / "golden" / "expected_pytorch_float.npy"), atol=1e-6)


def test_unknown_formats_list_the_registered_ones(torchscript, tmp_path):
    from edgekws.errors import EdgeKWSError

    with pytest.raises(EdgeKWSError, match="valid: onnx, tflite, torchscript"):
        export_subnet(width=0.25, out=tmp_path, formats=("coreml",))


def test_untrained_reference_of_the_mlperf_dscnn_exports_and_profiles(tmp_path):
    """A latency reference needs no trained weights: `export --family dscnn_mlperf` writes the
    MLPerf Tiny DS-CNN (23,756 parameters, 49×10 input) with seeded weights, marked untrained,
    gated for conversion parity, and `profile` runs it."""
    from typer.testing import CliRunner

    from edgekws.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["export", "--family", "dscnn_mlperf", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    m = doc["manifest"]
    assert m["checkpoint"]["untrained"] is True and m["accounting"]["params"] == 23_756
    assert m["input"]["shape"] == [1, 49, 10]
    assert all(c["passed"] for c in m["validation"]["checks"])
    res = runner.invoke(app, ["profile", doc["out_dir"], "--target", "pi3", "--runs", "20", "--warmup", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert {r["precision"] for r in json.loads(res.stdout)["results"]} == {"float", "int8"}
    res = runner.invoke(app, ["export", "--family", "dscnn_mlperf", "--checkpoint", "x.pt", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "takes no --checkpoint" in res.stderr
