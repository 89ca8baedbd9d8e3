"""Cost models, the accuracy oracle and the multi-objective search (issue: release per tier).

The search tests score subnets with the real accuracy oracle (the shipped supernet on the shipped
validation pack) and a cost model with known coefficients, so what is checked is the search's
own logic: budgets as constraints, the pick, the front, reproducibility, an empty tier.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekws.costmodel import FEATURES, CostModel, fit, fit_bench_rows, row_spec, spec_features
from edgekws.errors import EdgeKWSError
from edgekws.models import get_family
from edgekws.spec import SubnetSpec
from edgekws.targets import Budgets, DeviceTarget

SPACE = get_family("dscnn").space


def _specs(n: int, seed: int = 0) -> list[SubnetSpec]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        s = SPACE.sample(rng)
        if s not in out:
            out.append(s)
    return out


def test_dwconv_is_its_own_layer_type():
    f = dict(zip(FEATURES, spec_features(SPACE.largest())))
    assert f["dwconv2d_mmacs"] > 0 and f["pwconv2d_mmacs"] > f["conv2d_mmacs"] > 0  # pointwise; the stem
    assert f["kernels"] == 1 + 2 * 8 + 2  # stem, 8 blocks of (dw, pw), pool, head


def test_fit_recovers_a_linear_cost_and_reports_held_out_error():
    truth = np.array([0.02, 2.0, 0.5, 1.5, 0.1, 0.0, 0.003, 0.2])
    samples = [(s, float(spec_features(s) @ truth)) for s in _specs(30)]
    m = fit(samples, "latency_ms", {"device": "test"})
    assert m.holdout["mape_pct"] < 0.5 and m.holdout["within_10pct"] == 1.0 and m.specs == 30
    probe = _specs(5, seed=9)
    for s in probe:
        assert m.predict(s) == pytest.approx(float(spec_features(s) @ truth), rel=1e-3)
    again = CostModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.predict(probe[0]) == pytest.approx(m.predict(probe[0]))


def test_fit_refuses_too_few_subnets():
    with pytest.raises(EdgeKWSError, match="at least 9 different subnets, got 3"):
        fit([(s, 1.0) for s in _specs(3)] * 4, "latency_ms", {})


def test_cost_model_file_checked():
    bad = CostModel("latency_ms", {}, [1.0] * len(FEATURES), 10, 10).to_dict()
    bad["coef"][2] = -1.0
    with pytest.raises(EdgeKWSError, match="non-negative"):
        CostModel.from_dict(bad)
    with pytest.raises(EdgeKWSError, match="not a cost model"):
        CostModel.from_dict({"format": "x"})


def test_rows_name_their_spec_old_and_new():
    s = _specs(1)[0]
    assert row_spec({"model": s.name}) == s
    assert row_spec({"spec": s.to_dict(), "model": "anything"}) == s
    assert row_spec({"model": "not-a-subnet"}) is None
    assert SubnetSpec.parse_name("dscnn_mlperf-w64.64-d4") == SubnetSpec("dscnn_mlperf", (64, 64), (4,))


def _row(spec, device="local", version="2.3.0", ms=1.0, precision="int8"):
    return {"ok": True, "device": device, "runtime": "litert", "threads": 1, "precision": precision, "key": spec.name,
            "model": spec.name, "spec": spec.to_dict(), "latency_ms": {"median": ms, "p95": 1.1 * ms},
            "rss_kb": {"model_total": 4000 + ms}, "device_info": {"ai_edge_litert": version}}


def test_bench_rows_one_device_newest_runtime_version():
    specs = _specs(12)
    truth = np.array([0.01, 1.0, 0.4, 1.0, 0.1, 0.0, 0.002, 0.1])
    rows = [_row(s, ms=float(spec_features(s) @ truth)) for s in specs]
    with pytest.raises(EdgeKWSError, match="2 devices"):
        fit_bench_rows(rows + [_row(specs[0], device="ssh://pi")], "litert", 1)
    notes = []
    stale = [_row(s, version="2.1.0", ms=99.0) for s in specs[:4]]
    models = fit_bench_rows(rows + stale, "litert", 1, log=notes.append)
    assert any("4 row(s) measured with litert 2.1.0 skipped" in n for n in notes)
    assert models["int8/latency_ms"].holdout["mape_pct"] < 1.0  # the stale 99 ms rows were not fitted
    assert models["int8/latency_ms"].group["runtime_version"] == "2.3.0"
    with pytest.raises(EdgeKWSError, match="no successful measured rows"):
        fit_bench_rows(rows, "onnxruntime", 1)


# -- search ---------------------------------------------------------------------------------------

class KnownCosts:
    """Latency linear in the features (float 2× slower than int8), RAM and size from accounting."""

    coef = np.array([0.05, 0.6, 0.3, 1.2, 0.05, 0.0, 0.004, 0.1])

    def predict(self, spec, runtime, precision):
        from edgekws.accounting import account

        ms = float(spec_features(spec) @ self.coef) * (2.0 if precision == "float" else 1.0)
        acc = account(spec)
        size = acc.size_int8_bytes if precision == "int8" else acc.size_float_bytes
        return {"latency_ms": ms, "latency_p95_ms": 1.2 * ms, "ram_kb": 4000 + size / 1024, "model_kb": size / 1024,
                "latency_source": "test cost model"}


def _target(p95_ms: float, model_kb: float = 1024) -> DeviceTarget:
    return DeviceTarget("tier", "a test tier", "Cortex-A72", "aarch64", 4, 2048, 1, "litert",
                        Budgets(250_000, model_kb, 65536, p95_ms), clock_ghz=1.8)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from edgekws.assets import DEFAULT_CHECKPOINT
    from edgekws.oracle import AccuracyOracle

    return AccuracyOracle(DEFAULT_CHECKPOINT, cache_dir=tmp_path_factory.mktemp("oracle"))


def test_oracle_scores_on_validation_pack_and_caches(oracle, tmp_path):
    from edgekws.assets import DEFAULT_CHECKPOINT, load_pack
    from edgekws.oracle import AccuracyOracle
    from edgekws.train import evaluate_spec

    spec = SPACE.uniform(0.5)
    acc = oracle.accuracy(spec)
    direct, _ = evaluate_spec(oracle.ck.supernet(), spec, load_pack(oracle.pack_path), oracle.ck.calibration_features())
    assert acc == pytest.approx(direct, abs=1e-6) and 0.8 < acc <= 1.0
    assert "validation" in oracle.source and oracle.pack_path.name == "val_pack.npz"
    oracle.flush()
    again = AccuracyOracle(DEFAULT_CHECKPOINT, cache_dir=oracle.cache_path.parent)
    assert again.accuracy(spec) == acc and again.evaluated == 0  # answered from the cache
    oracle.cache_path.write_bytes(b"\xff{not json")
    rebuilt = AccuracyOracle(DEFAULT_CHECKPOINT, cache_dir=oracle.cache_path.parent)
    assert rebuilt.cached(spec) is None


def test_search_picks_inside_budgets_and_is_reproducible(oracle):
    from edgekws.search import best_uniform, search

    tgt = _target(p95_ms=1.0)
    a = search(SPACE, tgt, oracle.accuracy, KnownCosts(), trials=32, seed=3, population=8)
    b = search(SPACE, tgt, oracle.accuracy, KnownCosts(), trials=32, seed=3, population=8)
    assert a.pick is not None and a.pick.feasible
    assert a.pick.latency_p95_ms <= 1.0 and a.pick.params <= 250_000
    assert [e.key for e in a.evaluations] == [e.key for e in b.evaluations]
    assert a.pick.key == b.pick.key
    # the pick is the most accurate feasible trial, and on the front
    assert a.pick.accuracy == max(e.accuracy for e in a.evaluations if e.feasible)
    assert a.pick.key in {e.key for e in a.front}
    for e in a.front:  # the front holds no dominated point
        assert not any(o.accuracy > e.accuracy and o.latency_ms < e.latency_ms and o.model_kb < e.model_kb for o in a.front)
    ub, _ = best_uniform(SPACE, tgt, oracle.accuracy, KnownCosts())
    assert ub is not None and ub.feasible and a.pick.accuracy >= ub.accuracy  # the search starts from them


def test_search_with_impossible_budgets_has_no_pick(oracle):
    from edgekws.search import search

    res = search(SPACE, _target(p95_ms=0.001), oracle.accuracy, KnownCosts(), trials=8, seed=0, population=4)
    assert res.pick is None and res.front == []
    assert all(not e.feasible and "p95_latency_ms" in e.violations for e in res.evaluations)


# -- CLI ------------------------------------------------------------------------------------------

def test_costmodel_fit_cli_and_its_bad_input(tmp_path):
    from typer.testing import CliRunner

    from cliutil import one_line_error
    from edgekws.cli import app

    specs = _specs(12)
    truth = np.array([0.01, 1.0, 0.4, 1.0, 0.1, 0.0, 0.002, 0.1])
    rows = [_row(s, ms=float(spec_features(s) @ truth)) for s in specs]
    rows += [_row(s, ms=float(spec_features(s) @ truth) * 1.3, precision="float") for s in specs]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps({**r, "key": f"{r['key']}|{r['precision']}", "macs": 1}) + "\n" for r in rows)
                       + '{"torn": ')
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["costmodel", "fit", "--results", str(results), "--target", "host_x86", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "int8/latency_ms" in res.stdout and "float/latency_p95_ms" in res.stdout and "torn" in res.stderr
    doc = json.loads(out.read_text())
    assert doc["models"]["int8/latency_ms"]["holdout"]["mape_pct"] < 1.0 and doc["target"] == "host_x86"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_line_error(CliRunner().invoke(app, ["costmodel", "fit", "--results", str(empty)]), "no usable rows")
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps({**r, "macs": 1}) + "\n" for r in rows[:5]))
    one_line_error(CliRunner().invoke(app, ["costmodel", "fit", "--results", str(few), "--target", "pi5"]),
                   "no successful measured rows for runtime onnxruntime")
    one_line_error(CliRunner().invoke(app, ["costmodel", "fit", "--results", str(few)]), "at least 9 different subnets, got 5")
    one_line_error(CliRunner().invoke(app, ["search", "--target", "host_x86", "--samples", "2"]), "--samples", "between 5")
    one_line_error(CliRunner().invoke(app, ["release", "--targets", "pi4", "--precisions", "int4", "--out", str(tmp_path / "x")]),
                   "--precisions must list float and/or int8")
    assert not (tmp_path / "x").exists()  # a failed command leaves no empty folder behind


def test_search_never_picks_a_spec_training_did_not_visit(oracle):
    from edgekws.search import search

    uniform_widths = {s.channels for s in SPACE.width_multiplier_specs().values()}
    res = search(SPACE, _target(p95_ms=1.0), oracle.accuracy, KnownCosts(), trials=16, seed=1, population=6,
                 trained=lambda s: s.channels in uniform_widths)  # a supernet trained with one width per subnet
    assert res.pick is not None and res.pick.spec.channels in uniform_widths
    assert all(e.spec.channels in uniform_widths for e in res.front)
    assert any("untrained" in e.violations for e in res.evaluations)


def test_board_rows_drive_a_tiers_latency_model(tmp_path):
    """A tier whose target names its board: that board's rows (not this host, not an estimate)
    fit its latency model; rows of other devices, runtime versions and families are left out."""
    from dataclasses import replace

    from edgekws.release import build_predictor, latency_source
    from edgekws.targets import get_target

    pi4 = replace(get_target("pi4"), device="ssh://pi@pi4.lab")
    specs = _specs(12)
    truth = np.array([0.05, 2.0, 1.0, 3.0, 0.2, 0.0, 0.01, 0.5])
    rows = [_row(s, device="ssh://pi@pi4.lab", ms=float(spec_features(s) @ truth)) for s in specs]
    rows += [_row(s, device="ssh://pi@other", ms=50.0) for s in specs[:3]]
    rows += [{**_row(specs[0], device="ssh://pi@pi4.lab", ms=80.0), "spec": None, "model": "dscnn_mlperf-w64.64-d4"}]
    rows = [{**r, "threads": pi4.threads} for r in rows]
    assert latency_source(pi4, rows) == "board" and latency_source(get_target("pi4"), rows) == "estimated"
    assert latency_source(get_target("host_x86"), []) == "host"
    host = {f"h{i}": {"kind": "host", "checkpoint_sha256": "c", "runtime": "litert", "precision": "int8", "threads": 1,
                      "spec": s.to_dict(), "ram_kb": 4000.0 + i, "model_bytes": 30_000 + 1000 * i,
                      "latency_ms": {"median": 0.1, "p95": 0.2}} for i, s in enumerate(specs)}
    notes = []
    pred = build_predictor(pi4, "board", host, rows, ("litert",), ("int8",), "c", log=notes.append)
    assert any("dscnn_mlperf" in n and "skipped" in n for n in notes)
    probe = _specs(3, seed=5)
    for s in probe:
        got = pred.predict(s, "litert", "int8")
        assert got["latency_ms"] == pytest.approx(float(spec_features(s) @ truth), rel=0.01)
        assert got["latency_source"].startswith("measured (board ssh://pi@pi4.lab)")


def test_bench_rows_are_priced_with_the_architecture_their_exports_record(tmp_path):
    """kwt's shipped supernet has a convolutional stem the registered kwt lacks. Rows from its
    exports record that (`arch`, from the manifest), so a fit prices them with the stem: rows that
    follow the conv architecture exactly are fitted exactly, where the registered linear kwt's
    features could not. Rows of two architectures are one line asking which; rows of another
    architecture than the checkpoint's are skipped; rows written before rows had `arch` are read
    as the architecture fitted."""
    from dataclasses import replace

    from typer.testing import CliRunner

    from cliutil import one_line_error
    from edgekws.checkpoint import arch_dict, load_checkpoint
    from edgekws.assets import shipped_checkpoint
    from edgekws.cli import app
    from edgekws.measure import sample_specs

    linear = get_family("kwt")
    conv = replace(linear, arch=replace(linear.arch, embed="conv"))
    specs = sample_specs(conv.space, 14, seed=0)
    coef = np.array([0.05, 0.4, 0.2, 0.3, 0.1, 0.6, 0.002, 0.05])

    def row(spec, fam, with_arch=True):
        r = _row(spec, ms=float(spec_features(spec, family=fam) @ coef))
        return {**r, "arch": arch_dict(fam.arch)} if with_arch else r

    conv_rows = [row(s, conv) for s in specs]
    models = fit_bench_rows(conv_rows, "litert", 1)
    m = models["int8/latency_ms"]
    assert m.holdout["mape_pct"] < 1e-3 and m.group["arch"]["embed"] == "conv" and m.group["family"] == "kwt"
    legacy = fit_bench_rows([row(s, conv, with_arch=False) for s in specs], "litert", 1)["int8/latency_ms"]
    assert legacy.holdout["mape_pct"] > 0.1 and legacy.group["arch"]["embed"] == "linear"  # what it did before

    linear_rows = [{**row(s, linear), "key": s.name + "|linear", "device_info": {"ai_edge_litert": "2.3.0"}}
                   for s in specs[:4]]
    with pytest.raises(EdgeKWSError, match="2 architectures of family kwt"):
        fit_bench_rows(conv_rows + linear_rows, "litert", 1)
    notes = []
    chosen = fit_bench_rows(conv_rows + linear_rows, "litert", 1, log=notes.append, definition=conv)
    assert chosen["int8/latency_ms"].holdout["mape_pct"] < 1e-3 and chosen["int8/latency_ms"].rows == len(specs)
    assert any("4 row(s) skipped: they measure another architecture of kwt" in n for n in notes)
    notes = []
    fit_bench_rows(conv_rows[:10] + [row(s, conv, with_arch=False) for s in specs[10:]], "litert", 1, log=notes.append)
    assert any(f"{len(specs) - 10} row(s) record no architecture" in n for n in notes), notes
    bad = [{**conv_rows[0], "arch": {"embed": "conv", "heads_of_hydra": 9}}] + conv_rows[1:]
    notes = []
    assert fit_bench_rows(bad, "litert", 1, log=notes.append)["int8/latency_ms"].rows == len(specs) - 1
    assert any("unknown to family 'kwt'" in n for n in notes)

    # the CLI: --checkpoint names the architecture (the shipped kwt's is conv)
    assert load_checkpoint(shipped_checkpoint("kwt")).arch["embed"] == "conv"
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps({**r, "macs": 1}) + "\n" for r in conv_rows + linear_rows))
    one_line_error(CliRunner().invoke(app, ["costmodel", "fit", "--results", str(results), "--target", "host_x86",
                                            "--device", "local"]), "2 architectures of family kwt", "--checkpoint")
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["costmodel", "fit", "--results", str(results), "--target", "host_x86", "--device", "local",
                                   "--checkpoint", str(shipped_checkpoint("kwt")), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "4 row(s) skipped" in res.stderr
    doc = json.loads(out.read_text())
    assert doc["models"]["int8/latency_ms"]["group"]["arch"]["embed"] == "conv"
    one_line_error(CliRunner().invoke(app, ["costmodel", "fit", "--results", str(results), "--family", "dscnn",
                                            "--checkpoint", str(shipped_checkpoint("kwt"))]), "--family dscnn",
                   "kwt supernet")
