"""Release per tier, end to end on the real tools: instruction counts under qemu-user with the
counting plugin, exports through the gates, the search, verification on emulated aarch64, the
report — and a tier that nothing fits failing the run. Needs the arm64 sysroot and the plugin
(`make arm`; `make test` builds both)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekws.cli import app


def _need_arm() -> None:
    from edgekws.emulation import default_sysroot
    from edgekws.estimate import plugin_path

    missing = [str(p) for p in (default_sysroot() / "sysroot.json", plugin_path()) if not p.exists()]
    if missing:
        if os.environ.get("EDGEKWS_REQUIRE_ARM") == "1":
            pytest.fail(f"missing {', '.join(missing)}: `make arm` should have built it")
        pytest.skip(f"missing {', '.join(missing)}: run `make arm`")


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    from edgekws.export import export_subnet

    return export_subnet(width=0.25, out=tmp_path_factory.mktemp("exp"), formats=("tflite",)).out_dir


def test_instruction_counts_repeat_and_follow_cpu_features(small_export):
    from edgekws.estimate import count_instructions, estimate_ms

    _need_arm()
    model = small_export / "model_int8.tflite"
    a = count_instructions(model, "litert", "cortex-a53")["instructions"]
    b = count_instructions(model, "litert", "Cortex-A53")["instructions"]  # a target's spelling works too
    assert abs(a - b) / a < 0.001  # fixed BLAS threads and hash seed: nothing spins on a timer
    dot = count_instructions(model, "litert", "cortex-a76")["instructions"]
    assert dot < 0.8 * a  # XNNPACK takes its dot-product int8 kernels on the A76
    assert 0.01 < estimate_ms(a, "Cortex-A53", 1.4) < 10


def test_instruction_counts_on_a_sysroot_without_bytecode(small_export):
    """A fresh sysroot has no compiled bytecode for most of its wheels' modules. If the first
    counting run compiled and cached them, it counted the compiling and the second did not: 25
    inferences counted fewer instructions than 5, and the release's first measurement failed."""
    import shutil

    from edgekws.emulation import default_sysroot
    from edgekws.estimate import count_instructions

    _need_arm()
    site = default_sysroot() / "site"
    warm = count_instructions(small_export / "model_int8.tflite", "litert", "cortex-a53")["instructions"]
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    cold = count_instructions(small_export / "model_int8.tflite", "litert", "cortex-a53")["instructions"]
    # Not the 0.1 % two warm counts agree to: compiling shifts when the collector runs, which moved
    # a count by 0.6 % once. Unfixed, the pair fails outright or is off by over 100 %.
    assert abs(cold - warm) / warm < 0.02
    assert not any(site.rglob("*.pyc"))  # counting leaves the cache as it found it


def test_a_count_is_not_moved_by_bytecode_written_under_it(small_export, monkeypatch):
    """The sysroot's own bytecode can change between a count's two runs: another emulated run
    writes it, a test deletes it. Counting reads only its own cache, so it cannot: here the
    sysroot's modules are compiled between the 5- and the 25-inference run. Before, the 25-run
    loaded what the 5-run compiled, and the count failed ("25 inferences counted no more than 5",
    once in a CI run beside another) or came out wrong."""
    import compileall
    import shutil

    import edgekws.estimate as estimate
    from edgekws.emulation import default_sysroot

    _need_arm()
    site = default_sysroot() / "site"
    model = small_export / "model_int8.tflite"
    before = estimate.count_instructions(model, "litert", "cortex-a53")["instructions"]
    once = estimate._count_once
    compiled = []

    def compiling_between(model, runtime, cpu, runs, *args, **kw):
        n = once(model, runtime, cpu, runs, *args, **kw)
        if runs == estimate.LOW:
            compileall.compile_dir(str(site), quiet=1, workers=1)  # the host's CPython 3.11: the same magic
            compiled.append(any(site.rglob("*.pyc")))
        return n

    monkeypatch.setattr(estimate, "_count_once", compiling_between)
    try:
        after = estimate.count_instructions(model, "litert", "cortex-a53")["instructions"]
    finally:
        for cache in list(site.rglob("__pycache__")):
            shutil.rmtree(cache)
    assert compiled == [True]
    assert abs(after - before) / before < 0.02


def test_unknown_cpu_is_one_line(small_export):
    from edgekws.errors import EdgeKWSError
    from edgekws.estimate import count_instructions

    with pytest.raises(EdgeKWSError, match="no instruction-count estimate for CPU 'Cortex-M4'"):
        count_instructions(small_export / "model_int8.tflite", "litert", "Cortex-M4")


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory) -> Path:
    """One release folder for this module: the tests share its exports and measurement rows."""
    return tmp_path_factory.mktemp("release") / "rel"


def test_release_two_tiers_one_impossible_then_resume(tmp_path, release_dir):
    _need_arm()
    tight = tmp_path / "tight.toml"
    tight.write_text('name = "[b]too tight[/b]"\ncpu = "Cortex-A72"\narch = "aarch64"\ncores = 4\nmemory_mb = 512\n'
                     'threads = 1\nclock_ghz = 1.8\nruntime = "litert"\n\n[budgets]\nmax_params = 250000\n'
                     'max_model_kb = 256\nmax_ram_kb = 32768\nmax_p95_latency_ms = 0.01\n')
    out = release_dir
    args = ["release", "--targets", "pi4", "--targets", str(tight), "--out", str(out), "--samples", "5", "--trials", "16",
            "--precisions", "int8"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "1 tier(s) without a release: tight" in res.stderr and "Traceback" not in res.output
    index = json.loads((out / "index.json").read_text())
    pi4, bad = index["tiers"]["pi4"], index["tiers"]["tight"]
    assert pi4["status"] == "released" and bad["status"] == "no subnet fits" and index["failed"] == ["tight"]
    assert pi4["latency_source"] == "estimated" and pi4["pick"]["precision"] == "int8"
    v = pi4["verified"]
    assert v["golden"]["top1_agree"] == v["golden"]["n"] > 0  # emulated Cortex-A72 answers as x86 did
    assert v["latency_source"].startswith("estimated") and v["instructions"] > 0
    assert v["latency_p95_ms"] <= 5.0 and v["model_kb"] <= 256
    folder = out / pi4["folder"]
    assert (folder / "manifest.json").exists() and (folder / "model_int8.tflite").exists()
    assert (out / "pi4" / "pareto.png").stat().st_size > 10_000 and (out / "tight" / "pareto.png").exists()
    report = (out / "REPORT.md").read_text()
    assert "| pi4 | `" in report and "no subnet fits" in report and "[b]too tight[/b]" in report  # verbatim
    assert pi4["search"]["pick"]["accuracy"] >= (pi4["uniform_best"] or {"accuracy": 0})["accuracy"]
    rows_before = (out / "_rows.jsonl").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1
    assert "pi4: done before (released)" in again.stderr and "measured " not in again.stderr
    assert (out / "_rows.jsonl").read_bytes() == rows_before  # nothing measured twice


def test_release_on_a_board_uses_its_rows_and_verifies_there(tmp_path, release_dir):
    """The board path: bench rows from the tier's device fit its latency model, and the pick is
    verified on that device. The "board" is this machine through the `local` device (the SSH
    transport is the bench tests' business); its latency is then *measured*, not estimated."""
    suite = tmp_path / "board.toml"
    suite.write_text('name = "board"\nruns = 30\nwarmup = 3\nruntimes = ["litert"]\nprecisions = ["int8"]\n'
                     'threads = [1]\n' + "".join(f"[[models]]\nwidth = {w}\n" for w in (0.25, 0.5, 0.75, 1.0))
                     + "[[models]]\nsample = 5\nseed = 0\n")
    rows = tmp_path / "board.jsonl"
    res = CliRunner().invoke(app, ["bench", "--suite", str(suite), "--device", "local", "--results", str(rows),
                                   "--cache-dir", str(release_dir / "_exports")])
    assert res.exit_code == 0, res.output
    target = tmp_path / "lab_board.toml"
    target.write_text('name = "lab board"\ncpu = "auto"\narch = "auto"\ncores = "auto"\nmemory_mb = "auto"\n'
                      'threads = 1\nruntime = "litert"\ndevice = "local"\n\n[budgets]\nmax_params = 250000\n'
                      'max_model_kb = 256\nmax_ram_kb = 131072\nmax_p95_latency_ms = 50\n')
    res = CliRunner().invoke(app, ["release", "--targets", str(target), "--results", str(rows), "--out", str(release_dir),
                                   "--samples", "5", "--trials", "12", "--precisions", "int8"])
    assert res.exit_code == 0, res.output
    tier = json.loads((release_dir / "lab_board" / "release.json").read_text())
    assert tier["status"] == "released" and tier["latency_source"] == "board"
    assert tier["latency_model"]["litert/int8"]["group"]["device"] == "local"
    assert tier["latency_model"]["litert/int8"]["specs"] >= 9
    v = tier["verified"]
    assert v["device"] == "local" and v["device_ok"] and v["latency_source"] == "measured (local)"
    assert v["golden"]["top1_agree"] == v["golden"]["n"] > 0 and v["latency_p95_ms"] <= 50


def test_search_cli_prints_the_front_and_pick(release_dir):
    """`edgekws search` on one tier, reusing the release folder's measurements (nothing measured
    again): the front as JSON, the pick inside the budgets, the same answer twice."""
    _need_arm()
    args = ["search", "--target", "pi4", "--work", str(release_dir), "--samples", "5", "--trials", "12",
            "--precisions", "int8", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["latency_source"] == "estimated" and doc["pick"]["feasible"] and doc["front"]
    assert doc["pick"]["latency_p95_ms"] <= 5.0 and doc["pick"]["model_kb"] <= 256
    assert all(e["precision"] == "int8" for e in doc["front"])
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["pick"]["name"] == doc["pick"]["name"] and "measured " not in first.stderr


def test_a_tier_whose_int8_was_refused_too_often_is_searched_in_float():
    """When int8 failed its gates on enough measured subnets that its cost models cannot be
    fitted, the tier's predictor leaves int8 out with a note instead of failing the release;
    with every subnet's int8 measured, both precisions stay."""
    import numpy as np

    from edgekws.accounting import account
    from edgekws.measure import sample_specs
    from edgekws.models import get_family
    from edgekws.release import build_predictor
    from edgekws.targets import get_target

    specs = sample_specs(get_family("dscnn").space, 8, seed=0)
    assert len(specs) == 12

    def row(spec, prec):
        a = account(spec)
        ms = 1e-6 * a.macs * (1.5 if prec == "int8" else 1.0) + 0.01
        return {"kind": "host", "checkpoint_sha256": "c" * 64, "name": spec.name, "spec": spec.to_dict(),
                "runtime": "litert", "precision": prec, "threads": 1, "ram_kb": 4000 + a.params / 100,
                "model_bytes": 2000 + (a.size_int8_bytes if prec == "int8" else a.size_float_bytes),
                "latency_ms": {"median": ms, "p95": 1.1 * ms}}

    target = get_target("host_x86")
    # int8 rows for the first 7 specs only: 5 refused leave fewer than the 9 subnets a fit needs
    rows = {f"{s.name}|{p}": row(s, p) for s in specs for p in ("float", "int8") if p == "float" or specs.index(s) < 7}
    notes = []
    pred = build_predictor(target, "host", rows, [], ("litert",), ("float", "int8"), "c" * 64, log=notes.append)
    assert pred.precisions == ("float",) and ("litert", "int8") not in pred.latency
    assert len(pred.notes) == 1 and "int8 left out of host_x86's search" in pred.notes[0] and notes == [f"host_x86: {pred.notes[0]}"]
    assert np.isfinite(pred.predict(specs[0], "litert", "float")["latency_ms"])
    full = {f"{s.name}|{p}": row(s, p) for s in specs for p in ("float", "int8")}
    both = build_predictor(target, "host", full, [], ("litert",), ("float", "int8"), "c" * 64, log=notes.append)
    assert both.precisions == ("float", "int8") and not both.notes



def test_a_checkpoints_own_architecture_prices_its_specs():
    """A kwt checkpoint trained with `--embed conv` runs a stem the registered kwt lacks. Its
    tier's models are fitted with features from the checkpoint's own cost table, and every figure
    the search checks against a budget (latency, RAM, model KB, parameters) comes from that table:
    rows that follow the conv architecture exactly are predicted exactly, where the registered
    table's features miss them."""
    from dataclasses import replace

    import numpy as np

    from edgekws.accounting import account
    from edgekws.costmodel import spec_features
    from edgekws.measure import sample_specs
    from edgekws.models import get_family
    from edgekws.release import build_predictor
    from edgekws.search import evaluate
    from edgekws.targets import get_target

    linear = get_family("kwt")
    conv = replace(linear, arch=replace(linear.arch, embed="conv"))
    specs = sample_specs(conv.space, 10, seed=0)
    coef = np.array([0.05, 0.4, 0.2, 0.3, 0.1, 0.6, 0.002, 0.05])  # ms per feature (order: FEATURES)

    def row(spec):
        a = account(spec, family=conv)
        ms = float(spec_features(spec, family=conv) @ coef)
        return {"kind": "host", "checkpoint_sha256": "c" * 64, "name": spec.name, "spec": spec.to_dict(),
                "runtime": "litert", "precision": "float", "threads": 1, "ram_kb": 3000 + a.peak_activation_elems / 256,
                "model_bytes": 1500 + a.size_float_bytes, "latency_ms": {"median": ms, "p95": 1.2 * ms}}

    rows = {s.name: row(s) for s in specs}
    target = get_target("host_x86")
    own = build_predictor(target, "host", rows, [], ("litert",), ("float",), "c" * 64, log=lambda m: None, family=conv)
    registered = build_predictor(target, "host", rows, [], ("litert",), ("float",), "c" * 64, log=lambda m: None)
    assert own.family is conv and registered.family is None

    def worst(pred):
        return max(abs(pred.predict(s, "litert", "float")["latency_ms"] / rows[s.name]["latency_ms"]["median"] - 1)
                   for s in specs)

    assert worst(own) < 1e-6 < 1e-3 < worst(registered)
    spec = specs[0]
    assert own.predict(spec, "litert", "float")["model_kb"] == pytest.approx((1500 + account(spec, family=conv).size_float_bytes) / 1024)
    assert account(spec, family=conv).params > account(spec).params  # the stem and a wider token embedding
    ev = evaluate(spec, "litert", "float", target, lambda s: 0.9, own, family=own.family)
    assert ev.params == account(spec, family=conv).params
