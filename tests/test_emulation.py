"""Emulated aarch64: the same on-board runner and runtime wheels a Raspberry Pi would use, under
qemu-user with an arm64 Debian sysroot (`make arm`). Answers must match x86; latency is marked
as not meaningful."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekws.bench import ResultsFile, Suite, prepare_models, read_results, run_suite
from edgekws.devices import make_device
from edgekws.cli import app
from edgekws.emulation import CACHE_FILES, default_sysroot, hide_host_cpu_topology
from edgekws.errors import EdgeKWSError

from cliutil import one_line_error

SUITES = Path(__file__).resolve().parent.parent / "benchmarks" / "suites"
runner = CliRunner()


def test_host_cpu_topology_is_hidden_with_empty_files(tmp_path):
    """qemu -L falls through to the host for files missing in the sysroot, so hiding = empty files."""
    host = tmp_path / "host"
    for cpu in ("cpu0", "cpu1", "cpu2", "cpufreq"):
        (host / cpu).mkdir(parents=True)
    root = tmp_path / "root"
    assert hide_host_cpu_topology(root, host) == 3
    files = sorted(root.glob("sys/devices/system/cpu/*/cache/index*/*"))
    assert len(files) == 3 * 4 * len(CACHE_FILES) and all(f.stat().st_size == 0 for f in files)
    assert not (root / "sys/devices/system/cpu/cpufreq").exists()
    assert hide_host_cpu_topology(root, host) == 3  # idempotent


def test_bad_qemu_devices_are_one_line_errors(tmp_path):
    with pytest.raises(EdgeKWSError, match=r"unknown device .*qemu-aarch64\[:CPU\]\[@RELEASE\]"):
        make_device("qemu-aarch64x")
    with pytest.raises(EdgeKWSError, match="unknown Debian release 'buster' .*bookworm, bullseye"):
        make_device("qemu-aarch64:cortex-a53@buster")
    one_line_error(runner.invoke(app, ["bench", "--suite", str(SUITES / "smoke.toml"), "--device", "qemu-aarch64",
                                       "--sysroot", str(tmp_path / "none"), "--results", str(tmp_path / "r.jsonl")]),
                   "no arm64 bookworm sysroot")
    assert not (tmp_path / "r.jsonl").exists()


def need_sysroot(release: str) -> Path:
    root = default_sysroot(release)
    unavailable = root.with_name(f"{release}.unavailable")
    if release != "bookworm" and unavailable.exists():  # `make arm` could not build it and said why
        pytest.skip(f"{release} sysroot could not be built: {unavailable.read_text().strip()}")
    if not (root / "sysroot.json").exists():
        msg = f"no arm64 {release} sysroot at {root}: run `make arm`"
        if os.environ.get("EDGEKWS_REQUIRE_ARM") == "1":  # `make test` builds it, so it must be there
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="module")
def sysroot() -> Path:
    return need_sysroot("bookworm")


@pytest.fixture(scope="module")
def bullseye() -> Path:
    return need_sysroot("bullseye")


@pytest.mark.arm
def test_unknown_cpu_lists_the_valid_ones(sysroot):
    with pytest.raises(EdgeKWSError, match="unknown qemu CPU 'cortex-m4'.*cortex-a53"):
        make_device("qemu-aarch64:cortex-m4")


@pytest.mark.arm
def test_qemu_check_runs_aarch64_python_with_both_runtimes(sysroot):
    info = json.loads((sysroot / "sysroot.json").read_text())
    assert info["arch"] == "arm64" and info["probe"]["machine"] == "aarch64"
    assert info["probe"]["onnxruntime"] == info["packages"]["onnxruntime"]  # the host's own versions
    res = runner.invoke(app, ["qemu", "check", "--cpu", "cortex-a53"])
    assert res.exit_code == 0, res.output
    assert "aarch64 (cortex-a53, Debian bookworm) Python 3.11" in res.output and "onnxruntime 1." in res.output


@pytest.mark.arm
@pytest.mark.tflite
def test_suite_on_emulated_arm_matches_x86(sysroot, tmp_path):
    """Both runtimes, float and int8, on emulated Cortex-A53 beside this x86 host, in parallel:
    int8 answers must be identical to the ones export recorded on x86."""
    suite = Suite("arm", [{"width": 0.25}], ["litert", "onnxruntime"], ["float", "int8"], [1], runs=5, warmup=1)
    models = prepare_models(suite, SUITES / "smoke.toml", tmp_path / "cache")
    results = ResultsFile(tmp_path / "r.jsonl")
    counts = run_suite(suite, models, [make_device("qemu-aarch64:cortex-a53"), make_device("local")], results,
                       log=lambda m: None)
    assert counts == {"ok": 8, "failed": 0, "skipped": 0}
    rows = read_results(results.path)[0]
    arm = [r for r in rows if r["device"] == "qemu-aarch64:cortex-a53"]
    assert len(arm) == 4
    for r in arm:
        assert r["device_info"]["machine"] == "aarch64"
        assert r["emulated"] and r["latency_meaningful"] is False and "not meaningful" in r["note"]
        assert r["golden"]["n"] == 8 and r["golden"]["top1_identical"], r
        if r["precision"] == "int8":
            assert r["golden"]["max_int8_steps"] <= 1.0, r  # Arm int8 kernels may round one step apart
        else:
            assert r["golden"]["max_abs_diff"] < 1e-4, r
    res = runner.invoke(app, ["bench", "report", str(results.path), "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "not meaningful" in res.output and "8/8" in res.output


@pytest.mark.arm
@pytest.mark.tflite
def test_runner_on_an_old_board_stack_python39_numpy1_tflite_runtime(bullseye, tmp_path):
    """The runner's promise — Python 3.9+, numpy 1.x, tflite-runtime as LiteRT's fallback — on a
    Raspberry Pi OS 11-like stack, with both runtimes, checked against x86's answers."""
    suite = Suite("old", [{"width": 0.25}], ["litert", "onnxruntime"], ["float", "int8"], [1], runs=3, warmup=1)
    models = prepare_models(suite, SUITES / "smoke.toml", tmp_path / "cache")
    results = ResultsFile(tmp_path / "r.jsonl")
    counts = run_suite(suite, models, [make_device("qemu-aarch64:cortex-a53@bullseye")], results, log=lambda m: None)
    assert counts == {"ok": 4, "failed": 0, "skipped": 0}
    rows = read_results(results.path)[0]
    info = rows[0]["device_info"]
    assert info["python"].startswith("3.9.") and info["numpy"].startswith("1.") and info["machine"] == "aarch64"
    assert "tflite_runtime" in info and "ai_edge_litert" not in info
    assert {r["device"] for r in rows} == {"qemu-aarch64:cortex-a53@bullseye"}
    for r in rows:
        assert r["golden"]["top1_identical"], r  # int8 may round differently (older kernels), answers may not
        if r["precision"] == "float":
            assert r["golden"]["max_abs_diff"] < 1e-4, r
