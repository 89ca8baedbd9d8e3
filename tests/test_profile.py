"""Device targets as data, the self-contained on-board runner, and `edgekws profile`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cliutil import one_line_error
from edgekws.cli import app
from edgekws.errors import EdgeKWSError
from edgekws.devices import RUNNER
from edgekws.targets import get_target, list_targets, load_target

runner = CliRunner()


def test_shipped_targets_load():
    assert {"pi_zero2w", "pi3", "pi4", "pi5", "host_x86"} <= set(list_targets())
    for key in list_targets():
        t = get_target(key)
        assert t.budgets.max_params <= 250_000
        assert 1 <= t.threads <= t.cores
        assert t.runtime in ("litert", "onnxruntime")


@pytest.mark.parametrize("text, message", [
    ("name = 'x'", "missing key 'cpu'"),
    ("name='x'\ncpu='a'\narch='a'\ncores='four'\nmemory_mb=1\nthreads=1\nruntime='litert'\n[budgets]\nmax_params=1\nmax_model_kb=1\nmax_ram_kb=1\nmax_p95_latency_ms=1",
     "key 'cores' must be an integer, got str 'four'"),
    ("name='x'\ncpu='a'\narch='a'\ncores=4\nmemory_mb=1\nthreads=1\nruntime='tvm'\n[budgets]\nmax_params=1\nmax_model_kb=1\nmax_ram_kb=1\nmax_p95_latency_ms=1",
     "key 'runtime' must be one of litert, onnxruntime"),
    ("name='x'\ncpu='a'\narch='a'\ncores=4\nmemory_mb=1\nthreads=1\nruntime='litert'\n[budgets]\nmax_params=1\nmax_model_kb='big'\nmax_ram_kb=1\nmax_p95_latency_ms=1",
     "key 'budgets.max_model_kb' must be a number"),
    ("name = [", "not valid TOML"),
])
def test_malformed_target_names_file_key_and_type(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(EdgeKWSError, match=message) as info:
        load_target(p)
    assert str(p) in str(info.value)


def test_unknown_target():
    with pytest.raises(EdgeKWSError, match="valid: host_x86, pi3, pi4, pi5, pi_zero2w"):
        get_target("pi9")


def test_runner_is_python39_and_dependency_light():
    src = RUNNER.read_text()
    ast.parse(src, feature_version=(3, 9))  # no 3.10+ syntax
    imported = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)}
    imported |= {n.module.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"torch", "tensorflow", "edgekws", "typer", "rich"}, imported


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp")
    res = runner.invoke(app, ["export", "--width", "0.25", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return next(out.iterdir())


@pytest.mark.tflite
def test_runner_times_every_format(export_dir):
    models = [str(export_dir / m) for m in ("model_float.tflite", "model_int8.tflite", "model_float.onnx", "model_int8.onnx")]
    cmd = [sys.executable, str(RUNNER), "--runs", "30", "--warmup", "5", "--op-profile"]
    for m in models:
        cmd += ["--model", m]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    doc = json.loads(res.stdout)
    by = {r["model"]: r for r in doc["results"]}
    assert all(r["ok"] for r in doc["results"]), doc
    assert by["model_int8.tflite"]["precision"] == "int8" and by["model_float.onnx"]["precision"] == "float"
    for r in doc["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
        assert r["rss_kb"]["model_total"] > 0
    assert by["model_int8.onnx"]["op_profile_ms"]  # onnxruntime has a per-operator profile...
    assert not by["model_int8.onnx"].get("timed_with_profiler")  # ...from a pass after timing, not during it
    # "model RAM" is the model's: the runner's own numpy.random import is loaded before the first
    # snapshot (it once added ~6.5 MB to every model's share)
    lite = by["model_int8.tflite"]["rss_kb"]
    assert lite["model_total"] < 6 * 1024, lite
    assert by["model_int8.tflite"]["op_profile_ms"] is None and "no per-operator" in by["model_int8.tflite"]["op_profile_note"]
    # a file that is not a model is reported as a failed row, not a crash
    broken = export_dir.parent / "broken.tflite"
    broken.write_bytes(b"not a model")
    res = subprocess.run([sys.executable, str(RUNNER), "--model", str(broken)], capture_output=True, text=True, check=True)
    row = json.loads(res.stdout)["results"][0]
    assert row["ok"] is False and row["error"]


@pytest.mark.tflite
def test_runner_reproduces_the_golden_outputs(export_dir):
    """--all-inputs on the export's float features: the runner quantizes them itself for the int8
    TFLite model (its own scale and zero point) and must give export's recorded outputs exactly."""
    golden = export_dir / "golden"
    for fmt, ext in (("tflite", "tflite"), ("onnx", "onnx")):
        for prec in ("float", "int8"):
            res = subprocess.run([sys.executable, str(RUNNER), "--model", str(export_dir / f"model_{prec}.{ext}"), "--runs", "2",
                                  "--warmup", "0", "--input", str(golden / "features.npy"), "--all-inputs"],
                                 capture_output=True, text=True, check=True)
            row = json.loads(res.stdout)["results"][0]
            expected = np.load(golden / f"expected_{fmt}_{prec}.npy")
            got = np.asarray(row["outputs"])
            assert got.shape == expected.shape and row["top1"] == expected.argmax(1).tolist()
            if prec == "int8":
                np.testing.assert_array_equal(got, expected.astype(got.dtype))
            else:
                np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.tflite
def test_profile_cli(export_dir):
    res = runner.invoke(app, ["profile", str(export_dir), "--target", "pi4", "--runs", "30", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["target"] == "pi4" and rep["threads"] == 2 and rep["runtime"] == "litert"
    assert {r["precision"] for r in rep["results"]} == {"float", "int8"}
    assert rep["fastest_precision"] in ("float", "int8")
    assert rep["measured_on_target_arch"] is False and "indicative" in rep["note"]
    for r in rep["results"]:
        assert {c["what"] for c in r["budgets"]} == {"params", "model KB", "RAM KB", "p95 ms"}
    res = runner.invoke(app, ["profile", str(export_dir), "--target", "host_x86", "--runs", "20"])
    assert res.exit_code == 0 and "fastest here" in res.output
    one_line_error(runner.invoke(app, ["profile", str(export_dir), "--target", "nope"]), "unknown target 'nope'")
    one_line_error(runner.invoke(app, ["profile", str(export_dir.parent)]), "not an export folder")


@pytest.mark.tflite
def test_profile_a_width_of_the_shipped_kwt(export_dir):
    """`profile --width W --supernet kwt` exports that width of the shipped kwt first (as `export
    --supernet kwt` does) and profiles it; --supernet/--checkpoint with an export folder is one line."""
    res = runner.invoke(app, ["profile", "--width", "0.5", "--supernet", "kwt", "--runs", "10", "--warmup", "2", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["name"] == "kwt-w32.64-d6" and all(r["ok"] for r in rep["results"])
    one_line_error(runner.invoke(app, ["profile", str(export_dir), "--supernet", "kwt"]), "--supernet",
                   "an export folder already has its model")
    one_line_error(runner.invoke(app, ["profile", "--width", "0.5", "--supernet", "lstm"]),
                   "no shipped supernet for family 'lstm'")
