"""`edgekws finetune`: one subnet of the shipped supernet trained alone (on the real tiny corpus),
the one-spec checkpoint it writes, and what eval and export make of such a checkpoint."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cliutil import one_line_error

from edgekws.assets import DEFAULT_CHECKPOINT
from edgekws.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from edgekws.cli import app
from edgekws.evaluate import evaluate_checkpoint
from edgekws.fileio import sha256_file

runner = CliRunner()


def test_finetune_writes_a_one_spec_checkpoint_that_eval_and_export_read(tiny_corpus, tmp_path):
    out = tmp_path / "w025.pt"
    res = runner.invoke(app, ["finetune", "--data-dir", str(tiny_corpus), "--width", "0.25", "--epochs", "1",
                              "--lr", "1e-5", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    spec = shipped.space.uniform(0.25)
    assert rep["before"]["fixed"] == shipped.metrics["test"]["width_0.25"]["accuracy"]
    assert rep["test"]["fixed"]["name"] == spec.name

    ck = load_checkpoint(out)
    assert ck.sampling == "fixed" and ck.only_spec == spec and ck.trained(spec) and not ck.trained(shipped.space.largest())
    cfg = ck.train_config
    assert cfg["init"] == cfg["teacher"] == str(DEFAULT_CHECKPOINT)
    assert cfg["init_sha256"] == cfg["teacher_sha256"] == sha256_file(DEFAULT_CHECKPOINT)
    assert (cfg["epochs"], cfg["lr"], cfg["warmup_epochs"]) == (1, 1e-5, 0.5)
    for k in ("batch_size", "label_smoothing", "spec_augment", "wave_augment", "feature_variants", "seed"):
        assert cfg[k] == shipped.train_config[k], k  # the rest of the recipe is the supernet's

    # a one-spec checkpoint gives its own subnet when none is asked, and refuses any other
    assert ck.pick() == spec and ck.pick(width=0.25) == spec
    rows = evaluate_checkpoint(out, tiny_corpus, cache_dir=tmp_path / "cache")["results"]
    assert [r["name"] for r in rows] == [spec.name]
    res = runner.invoke(app, ["export", "--checkpoint", str(out), "--formats", "onnx", "--precision", "float",
                              "--out", str(tmp_path / "x"), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["manifest"]
    assert m["spec"]["channels"] == list(spec.channels) and m["validation"]["passed"]
    assert m["validation"]["pytorch_float_accuracy"] > 0.5  # the supernet's weights, barely moved
    src = m["checkpoint"]["one_spec"]  # the manifest names the supernet it came from
    assert src["init"] == {"path": DEFAULT_CHECKPOINT.name, "sha256": sha256_file(DEFAULT_CHECKPOINT)} and src["epochs"] == 1
    one_line_error(runner.invoke(app, ["export", "--checkpoint", str(out), "--width", "1.0", "--out",
                                       str(tmp_path / "y")]), "holds one subnet", spec.name)
    res = runner.invoke(app, ["info", "--checkpoint", str(out)])
    assert res.exit_code == 0 and f"the one subnet: {spec.name}" in res.stdout
    assert f"started from {DEFAULT_CHECKPOINT}" in res.stdout.replace("\n", "")
    one_line_error(runner.invoke(app, ["eval", "--checkpoint", str(out), "--data-dir", str(tiny_corpus),
                                       "--width", "0.5"]), "holds one subnet")
    # --depth alone: the one spec's depth is asked for, so a depth it lacks is refused, not a crash
    one_line_error(runner.invoke(app, ["eval", "--checkpoint", str(out), "--data-dir", str(tiny_corpus),
                                       "--depth", "2"]), "holds one subnet")


def test_finetune_refuses_what_the_source_never_trained(tiny_corpus, tmp_path):
    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    uniform = tmp_path / "uniform.pt"  # the first shipped supernet's policy: mixed widths untrained
    save_checkpoint(uniform, Checkpoint(shipped.family, shipped.space, shipped.features, shipped.labels,
                                        shipped.state_dict, shipped.train_config, shipped.metrics,
                                        calibration=shipped.calibration, sampling="uniform", arch=shipped.arch))
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({"family": "dscnn", "channels": [16, 48, 40, 224], "depths": [2, 3, 3]}))
    base = ["finetune", "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "o.pt")]
    one_line_error(runner.invoke(app, [*base, "--checkpoint", str(uniform), "--spec", str(mixed)]), "never visited")
    one_line_error(runner.invoke(app, [*base, "--width", "0.5", "--spec", str(mixed)]), "not both")
    one_line_error(runner.invoke(app, [*base, "--supernet", "kwt", "--checkpoint", str(uniform)]), "not both")
    one_line_error(runner.invoke(app, ["finetune", "--data-dir", str(tiny_corpus), "--checkpoint", str(uniform),
                                       "--out", str(uniform)]), "is the supernet this run reads")
    assert not (tmp_path / "o.pt").exists() and load_checkpoint(uniform).sampling == "uniform"
