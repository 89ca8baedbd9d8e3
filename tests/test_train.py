"""Supernet training on a real (tiny, synthetic) corpus: checkpoints, determinism, resume, KD
losses, safe loading, evaluation and 2-process distributed training."""

from __future__ import annotations

import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgekws.alloc import keep_freed_memory
from edgekws.checkpoint import CheckpointError, load_checkpoint
from edgekws.cli import app
from edgekws.errors import EdgeKWSError
from edgekws.models import get_family
from edgekws.step import alpha_divergence, kd_alpha, kd_kl, training_spec
from edgekws.train import TrainConfig, train

TINY = dict(epochs=2, batch_size=32, num_random=1, width_anchors=0)  # the default is 3 anchors of 7


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "ck.pt"
    train(tiny_corpus, out, TrainConfig(**TINY), cache_dir=out.parent / "cache", log=lambda m: None)
    return out


def test_checkpoint_is_self_describing(trained):
    ck = load_checkpoint(trained)
    assert ck.family == "dscnn" and len(ck.labels) == 12
    assert ck.space == get_family("dscnn").space
    assert ck.features.shape == (49, 40)
    assert ck.calibration.dtype == torch.float16 and tuple(ck.calibration.shape[1:]) == (49, 40)
    assert 0 < len(ck.calibration) <= 512
    assert ck.train_config["epochs"] == 2 and ck.train_config["kd"] == "kl"
    assert ck.sampling == "per_stage" and ck.trained(ck.space.sample(__import__("numpy").random.default_rng(5)))
    assert len(ck.metrics["history"]) == 2
    assert set(ck.metrics["test"]) == {"width_0.25", "width_0.5", "width_0.75", "width_1", "smallest"}
    net = ck.supernet()
    net.set_active(ck.space.uniform(0.5))
    assert net(torch.zeros(2, 49, 40)).shape == (2, 12)
    # the file itself loads with weights_only=True
    torch.load(trained, weights_only=True)


def test_training_is_deterministic(tiny_corpus, tmp_path, trained):
    again = tmp_path / "again.pt"
    train(tiny_corpus, again, TrainConfig(**TINY), cache_dir=tmp_path / "cache", log=lambda m: None)
    a, b = load_checkpoint(trained).state_dict, load_checkpoint(again).state_dict
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted(tiny_corpus, tmp_path, trained):
    out = tmp_path / "resumed.pt"

    def stop_in_epoch_two(i, n, info):
        if info["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_corpus, out, TrainConfig(**TINY), cache_dir=tmp_path / "cache", log=lambda m: None, on_step=stop_in_epoch_two)
    assert not out.exists() and out.with_name("resumed.pt.state").exists()
    train(tiny_corpus, out, TrainConfig(**TINY), cache_dir=tmp_path / "cache", resume=True, log=lambda m: None)
    a, b = load_checkpoint(trained).state_dict, load_checkpoint(out).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not out.with_name("resumed.pt.state").exists()
    # both halves ran here: one run of epochs on this machine's CPU, in the checkpoint's metrics
    from edgekws.targets import host_facts

    (machine,) = load_checkpoint(out).metrics["machines"]
    assert machine["cpu"] == host_facts()["cpu"] and machine["epochs"] == [1, 2] and machine["seconds"] > 0


def test_info_names_the_machine_that_trained_each_epoch(trained):
    from edgekws.targets import host_facts

    res = CliRunner().invoke(app, ["info", "--checkpoint", str(trained)])
    assert res.exit_code == 0, res.output
    assert f"epochs 1–2 on {host_facts()['cpu']}" in " ".join(res.output.split())


def test_machines_of_splits_a_resumed_run_by_cpu():
    """A run resumed on another kind of machine reports each machine's epochs and seconds (a
    history written before hosts were recorded reads as 'unrecorded')."""
    from edgekws.train import machines_of

    history = [{"epoch": 1, "seconds": 30.0}, {"epoch": 2, "seconds": 61.0, "host": "A"},
               {"epoch": 3, "seconds": 90.0, "host": "A"}, {"epoch": 4, "seconds": 156.0, "host": "B"}]
    assert machines_of(history) == [{"cpu": "unrecorded", "epochs": [1, 1], "seconds": 30.0},
                                    {"cpu": "A", "epochs": [2, 3], "seconds": 60.0},
                                    {"cpu": "B", "epochs": [4, 4], "seconds": 66.0}]
    assert machines_of([]) == []


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"format": "edgekws.supernet/1", "payload": _Evil(str(marker))}, bad)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(bad)
    assert not marker.exists()
    # a plain pickle file and a truncated checkpoint are refused too
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not marker.exists()


def test_corrupt_and_missing_checkpoints(tmp_path, trained):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(trained.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an edgekws supernet checkpoint"):
        load_checkpoint(other)


def test_kd_losses():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(16, 12, generator=g), torch.randn(16, 12, generator=g)
    assert kd_kl(t, t).abs() < 1e-6
    assert kd_kl(s, t) > 0
    for a in (-1.0, 0.5, 1.0, 0.0):
        same = alpha_divergence(t, t, a, 5.0)
        assert same.abs().max() < 1e-5
        assert (alpha_divergence(s, t, a, 5.0) >= -1e-6).all()
    # α → 1 is KL(teacher ‖ student)
    torch.testing.assert_close(alpha_divergence(s, t, 1.0, 1e9).mean(), kd_kl(s, t), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alpha_divergence(s, t, 0.999, 1e9), alpha_divergence(s, t, 1.0, 1e9), rtol=1e-2, atol=1e-3)
    assert kd_alpha(s, t, -1.0, 1.0, 5.0) >= kd_kl(s, t) - 1e-6


def test_uniform_sampling_shares_one_width_and_draws_depths():
    import numpy as np

    space = get_family("dscnn").space
    rng = np.random.default_rng(0)
    specs = [training_spec(space, rng, "uniform") for _ in range(50)]
    assert all(s.channels in {u.channels for u in space.width_multiplier_specs().values()} for s in specs)
    assert len({s.depths for s in specs}) > 5


def test_alpha_kd_teacher_and_kwt_train(tiny_corpus, tmp_path, trained):
    out = tmp_path / "student.pt"
    cfg = TrainConfig(family="kwt", epochs=1, batch_size=32, num_random=1, width_anchors=0, kd="alpha", teacher=str(trained))
    res = train(tiny_corpus, out, cfg, cache_dir=tmp_path / "cache", log=lambda m: None)
    ck = load_checkpoint(out)
    assert ck.family == "kwt" and ck.train_config["teacher"] == str(trained)
    assert 0.0 <= res.metrics["test"]["width_1"]["accuracy"] <= 1.0


def test_eval_cli_on_a_testing_only_folder(tiny_corpus, tmp_path, trained):
    folder = tmp_path / "evalset"
    shutil.copytree(tiny_corpus, folder)
    (folder / "validation_list.txt").unlink()
    png = tmp_path / "cm.png"
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(trained), "--data-dir", str(folder), "--json",
                                   "--png", str(png), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert [r["width"] for r in rep["results"]] == ["0.25", "0.5", "0.75", "1"]
    for r in rep["results"]:
        cm = r["confusion"]
        assert sum(map(sum, cm)) == rep["examples"]
        assert abs(sum(cm[i][i] for i in range(12)) / rep["examples"] - r["accuracy"]) < 1e-3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(trained), "--data-dir", str(folder), "--width", "0.5",
                                   "--depth", "1", "--depth", "3", "--png", str(png), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0 and "dscnn-w32.48.80.112-d1.1.1" in res.output and "dscnn-w32.48.80.112-d2.3.3" in res.output
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data-dir", str(folder)])
    assert res.exit_code == 1 and "does not exist" in res.stderr


def test_torchrun_two_cpu_ranks_stay_in_step(tiny_corpus, tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "edgekws", "train", "--data-dir", str(tiny_corpus), "--out", str(out), "--epochs", "2",
           "--batch-size", "32", "--num-random", "1", "--width-anchors", "0", "--threads", "1", "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    ck = load_checkpoint(out)
    assert ck.metrics["world_size"] == 2
    digests = ck.metrics["rank_param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_old_format_reads_as_uniform_and_unknown_format_names_its_version(tmp_path, trained):
    payload = torch.load(trained, weights_only=True)
    old = {k: v for k, v in payload.items() if k != "sampling"}
    old["format"] = "edgekws.supernet/1"
    torch.save(old, tmp_path / "v1.pt")
    ck = load_checkpoint(tmp_path / "v1.pt")
    assert ck.sampling == "uniform"
    space = ck.space
    from edgekws.spec import SubnetSpec

    assert ck.trained(space.uniform(0.5)) and not ck.trained(SubnetSpec("dscnn", (16, 48, 40, 224), (1, 1, 1)))
    future = dict(payload, format="edgekws.supernet/9")
    torch.save(future, tmp_path / "v9.pt")
    with pytest.raises(CheckpointError, match=r"format 'edgekws.supernet/9' is not readable"):
        load_checkpoint(tmp_path / "v9.pt")
    res = CliRunner().invoke(app, ["info", "--checkpoint", str(tmp_path / "v9.pt")])
    assert res.exit_code == 1 and "edgekws.supernet/9" in res.stderr and "Traceback" not in res.output


def test_fixed_spec_checkpoint_covers_only_its_spec(tiny_corpus, tmp_path):
    space = get_family("dscnn").space
    spec = space.uniform(0.25)
    out = tmp_path / "twin.pt"
    train(tiny_corpus, out, TrainConfig(epochs=1, batch_size=32, fixed_spec=spec.to_dict()),
          cache_dir=tmp_path / "cache", log=lambda m: None)
    ck = load_checkpoint(out)
    assert ck.sampling == "fixed" and ck.trained(spec) and not ck.trained(space.largest())


def test_recipe_options_train_and_are_recorded(tiny_corpus, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=32, num_random=1, width_anchors=0, channel_augment=True, spec_augment_scope="largest",
                      decay_weights_only=True, warmup_epochs=0.5)
    out = tmp_path / "recipe.pt"
    train(tiny_corpus, out, cfg, cache_dir=tmp_path / "cache", log=lambda m: None)
    ck = load_checkpoint(out)
    assert ck.train_config["channel_augment"] is True and ck.train_config["spec_augment_scope"] == "largest"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "x.pt"),
                                   "--sampling", "sideways", "--epochs", "1"])
    assert res.exit_code == 1 and "--sampling must be one of per_stage, uniform" in res.stderr


def test_eval_without_checkpoint_uses_the_shipped_supernet(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["eval", "--data-dir", str(tiny_corpus), "--width", "0.5", "--json",
                                   "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["checkpoint"].endswith("dscnn_supernet.pt") and [r["width"] for r in rep["results"]] == ["0.5"]
    assert Path(rep["confusion_png"]).parent == Path(".") and (tmp_path / rep["confusion_png"]).exists()


def test_supernet_option_evaluates_a_shipped_family(tiny_corpus, tmp_path, monkeypatch):
    from cliutil import one_line_error

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["eval", "--supernet", "kwt", "--data-dir", str(tiny_corpus), "--width", "0.25",
                                   "--json", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["checkpoint"].endswith("kwt_supernet.pt") and rep["results"][0]["name"].startswith("kwt-")
    assert Path(rep["confusion_png"]).name == "kwt_supernet_confusion_testing.png"
    one_line_error(CliRunner().invoke(app, ["eval", "--supernet", "cnn", "--data-dir", str(tiny_corpus)]),
                   "no shipped supernet for family 'cnn'", "shipped: dscnn, kwt")
    one_line_error(CliRunner().invoke(app, ["eval", "--supernet", "kwt", "--checkpoint", "x.pt", "--data-dir",
                                            str(tiny_corpus)]), "give --checkpoint or --supernet, not both")


def test_leave_one_engine_out_command(tiny_corpus, tmp_path):
    import csv

    with open(tiny_corpus / "meta.csv", newline="") as f:
        engines = {r["path"]: r["engine"] for r in csv.DictReader(f)}
    held = sum(e == "flite" for e in engines.values())
    assert held > 0
    res = CliRunner().invoke(app, ["loeo", "--data-dir", str(tiny_corpus), "--engine", "flite", "--out",
                                   str(tmp_path / "loeo"), "--epochs", "1", "--json", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["views"]["heldout_clips"] == held and rep["views"]["train_clips"] == len(engines) - held
    train_view = tmp_path / "loeo" / "views" / "train"
    assert not any(engines.get(str(p.relative_to(train_view))) == "flite" for p in train_view.rglob("*.wav"))
    assert [r["width"] for r in rep["rows"]] == ["0.25", "0.5", "0.75", "1"]
    assert all(0 <= r["heldout_accuracy"] <= 1 for r in rep["rows"])
    assert json.loads((tmp_path / "loeo" / "loeo.json").read_text())["engine"] == "flite"
    assert rep["train_config"]["channel_augment"] is False
    # per voice: the engine's own voices (silence cuts apart), adding up to the held-out figures
    with open(tiny_corpus / "meta.csv", newline="") as f:
        flite_voices = {r["voice"] for r in csv.DictReader(f) if r["engine"] == "flite"}
    groups = rep["heldout_per_voice"]
    assert {g["voice"] for g in groups} - {"(silence)"} <= flite_voices and len(groups) >= 2
    assert sum(g["examples"] for g in groups) == rep["heldout_examples"]
    for r in rep["rows"]:
        weighted = sum(g["examples"] * g["accuracy"][r["width"]] for g in groups) / rep["heldout_examples"]
        assert abs(weighted - r["heldout_accuracy"]) < 1e-3
    assert rep["train_seconds"] > 0 and rep["train_machines"][0]["epochs"] == [1, 1]
    # benchmarks/loeo_adapt.py on this run: it first reproduces the report's held-out figures with
    # the training BN, then adapts BN on the held-out clips; per-voice figures add up to the totals
    script = [sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "loeo_adapt.py")]
    out = tmp_path / "adapt.json"
    res = subprocess.run([*script, str(tmp_path / "loeo"), "--calib-examples", "16", "--cache-dir", str(tmp_path / "cache"),
                          "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    adapted = json.loads(out.read_text())
    assert [r["width"] for r in adapted["rows"]] == ["0.25", "0.5", "0.75", "1"]
    sizes = {g["voice"]: g["examples"] for g in groups}
    for a, r in zip(adapted["rows"], rep["rows"]):
        assert a["heldout_accuracy"]["training"] == r["heldout_accuracy"]
        assert set(a["per_voice"]) == set(sizes)
        for way in ("training", "clips", "voices"):
            weighted = sum(sizes[v] * acc[way] for v, acc in a["per_voice"].items()) / rep["heldout_examples"]
            assert abs(weighted - a["heldout_accuracy"][way]) < 1e-3
            assert a["gap_pt"][way] == round(100 * (a["heldout_accuracy"][way] - r["in_distribution_accuracy"]), 2)
    # benchmarks/loeo_silence.py on this run: the silence cuts of both views, counted from the
    # corpus's own split, scored per width; the held-out figures agree with the report's per-voice table
    sil = [sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "loeo_silence.py")]
    ck = tmp_path / "loeo" / "supernet_without_flite.pt"
    res = subprocess.run([*sil, "--views", str(tmp_path / "loeo" / "views"), str(ck), "--cache-dir", str(tmp_path / "cache"),
                          "--out", str(tmp_path / "sil.json")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    scored = json.loads((tmp_path / "sil.json").read_text())["checkpoints"][0]
    assert scored["engine"] == "flite" and scored["held_out_verified"] is True
    held_silence = next(g for g in groups if g["voice"] == "(silence)")
    assert scored["views"]["held-out"]["silence_cuts"] == held_silence["examples"]
    for row in scored["views"]["held-out"]["rows"]:
        assert row["silence_accuracy"] == held_silence["accuracy"][row["width"]]
        assert 0 <= row["silence_called_keyword"] <= 1 - row["silence_accuracy"] + 1e-9
    assert [r["accuracy"] for r in scored["views"]["in-distribution"]["rows"]] == \
        [rep_row["in_distribution_accuracy"] for rep_row in rep["rows"]]
    from edgekws.assets import DEFAULT_CHECKPOINT  # trained on the whole corpus: not a held-out model
    res = subprocess.run([*sil, "--views", str(tmp_path / "loeo" / "views"), str(DEFAULT_CHECKPOINT),
                          "--out", str(tmp_path / "sil2.json")], capture_output=True, text=True)
    assert res.returncode == 1 and "not on the train view of an `edgekws loeo` run" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "sil2.json").exists()
    tampered = json.loads((tmp_path / "loeo" / "loeo.json").read_text())
    tampered["rows"][0]["heldout_accuracy"] = 1.5
    bad = tmp_path / "bad_run"
    bad.mkdir()
    (bad / "loeo.json").write_text(json.dumps(tampered))
    (bad / "views").symlink_to(tmp_path / "loeo" / "views")
    res = subprocess.run([*script, str(bad), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "not the run's checkpoint or clips" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.json").exists()
    # --resume reuses the finished run only if it was trained with the same recipe
    again = ["loeo", "--data-dir", str(tiny_corpus), "--engine", "flite", "--out", str(tmp_path / "loeo"),
             "--epochs", "1", "--resume", "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, [*again, "--channel-augment"])
    assert res.exit_code == 1 and "other settings (channel_augment)" in res.stderr and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*again, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"] == rep["rows"]
    res = CliRunner().invoke(app, again)  # the tables: widths, then the held-out engine per voice
    assert res.exit_code == 0 and "held-out flite per voice" in res.stdout
    assert any(v in res.stdout for v in flite_voices)
    # views made for flite are not silently reused for another engine
    res = CliRunner().invoke(app, ["loeo", "--data-dir", str(tiny_corpus), "--engine", "espeak", "--out",
                                   str(tmp_path / "loeo"), "--epochs", "1"])
    assert res.exit_code == 1 and "holds out 'flite'" in res.stderr and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["loeo", "--data-dir", str(tiny_corpus), "--engine", "[bold]nope", "--out",
                                   str(tmp_path / "loeo2")])
    assert res.exit_code == 1 and "engine '[bold]nope' is not in" in res.stderr


def test_leave_one_engine_out_without_voices_in_meta_still_reports(tiny_corpus, tmp_path):
    """The per-voice breakdown is extra: a meta.csv that names engines but no voices still gives
    the report (and the trained checkpoint is not lost to it)."""
    import csv
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    with open(corpus / "meta.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(corpus / "meta.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "engine"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    res = CliRunner().invoke(app, ["loeo", "--data-dir", str(corpus), "--engine", "flite", "--out", str(tmp_path / "loeo"),
                                   "--epochs", "1", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "held-out flite per voice" not in res.stdout and "gap (pt)" in res.stdout
    rep = json.loads((tmp_path / "loeo" / "loeo.json").read_text())
    assert rep["heldout_per_voice"] == [] and len(rep["rows"]) == 4


def test_loeo_compare_on_the_committed_reports(tmp_path):
    """benchmarks/loeo_compare.py on two real reports: its changes are the files' own differences,
    its per-voice rows the voices both have, and reports of different engines are refused."""
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    base, cand = results / "loeo_flite_dscnn_20ep.json", results / "loeo_flite_dscnn_150ep.json"
    script = [sys.executable, str(results.parent / "loeo_compare.py")]
    out = tmp_path / "cmp.json"
    res = subprocess.run([*script, str(base), str(cand), "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got, b, c = json.loads(out.read_text()), json.loads(base.read_text()), json.loads(cand.read_text())
    for row, rb, rc in zip(got["rows"], b["rows"], c["rows"]):
        assert row["width"] == rb["width"] == rc["width"]
        assert row["heldout_delta_pt"] == round(100 * (rc["heldout_accuracy"] - rb["heldout_accuracy"]), 2)
        assert row["gap_change_pt"] == round(rc["gap_pt"] - rb["gap_pt"], 2)
        assert 0 < row["heldout_band_pt"] < 5  # 3,538 examples: about ±2 pt
    assert got["recipe_changes"]["epochs"] == [20, 150]
    assert got["per_voice"] == []  # the 20-epoch report predates the per-voice breakdown
    assert "| 1 | 75.49 → 84.14 % | +8.65" in out.with_suffix(".md").read_text()
    res = subprocess.run([*script, str(cand), str(cand), "--out", str(out)], capture_output=True, text=True)
    voices = json.loads(out.read_text())["per_voice"]
    assert res.returncode == 0 and {v["voice"] for v in voices} >= {"awb", "kal", "kal16", "rms", "slt"}
    assert all(w["delta_pt"] == 0 for v in voices for w in v["widths"].values())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**c, "engine": "festival"}))
    res = subprocess.run([*script, str(base), str(other), "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert res.returncode == 1 and "differ in engine" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.json").exists()


def test_loeo_summary_on_the_committed_reports(tmp_path):
    """benchmarks/loeo_summary.py: one row per report with that report's own gaps, the goal judged
    at width 1.0 against --goal-pt, the lowest and highest real voice (never the silence group),
    and a broken report refused in one line with nothing written."""
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    script = [sys.executable, str(results.parent / "loeo_summary.py")]
    old, new = results / "loeo_flite_dscnn_20ep.json", results / "loeo_flite_dscnn_150ep.json"
    rep = json.loads(new.read_text())
    near = tmp_path / "near.json"  # the same report with its width-1.0 gap inside 5 pt
    near.write_text(json.dumps({**rep, "rows": [{**r, "gap_pt": -4.2} if r["width"] == "1" else r for r in rep["rows"]]}))
    out = tmp_path / "sum.json"
    res = subprocess.run([*script, str(old), str(new), str(near), "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["file"] for r in rows] == ["loeo_flite_dscnn_20ep.json", "loeo_flite_dscnn_150ep.json", "near.json"]
    assert rows[1]["gap_pt"] == {r["width"]: r["gap_pt"] for r in rep["rows"]} and rows[1]["epochs"] == 150
    assert rows[1]["engine_balance"] == 0.0  # a report made before the option ran without it
    assert [r["widest"]["within_goal"] for r in rows] == [False, False, True]
    voices = {v["voice"]: v["accuracy"]["1"] for v in rep["heldout_per_voice"] if v["voice"] != "(silence)"}
    assert rows[1]["widest"]["lowest_voice"]["voice"] == min(voices, key=voices.get) == "awb"
    assert rows[1]["widest"]["highest_voice"]["accuracy"] == max(voices.values()) < 0.99  # silence scores 99.66 %
    assert rows[0]["widest"]["lowest_voice"] is None  # the 20-epoch report predates the per-voice breakdown
    assert "| -13.51 | 84.14 / 97.65 % | not met | awb 70.42 % | kal16 95.80 % |" in out.with_suffix(".md").read_text()
    res = subprocess.run([*script, str(new), "--goal-pt", "14", "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0 and json.loads(out.read_text())["rows"][0]["widest"]["within_goal"]
    # the model is a column: the family, and kwt's token embedding when it is not the linear one
    kwt = results / "loeo_flite_kwt_20ep_embed_conv.json"
    res = subprocess.run([*script, str(new), str(kwt), "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert [r["model"] for r in json.loads(out.read_text())["rows"]] == ["dscnn", "kwt (conv embed)"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"engine": "flite"}))
    res = subprocess.run([*script, str(new), str(broken), "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert res.returncode == 1 and "broken.json: not a loeo report" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.json").exists()


def test_local_processes_train_in_step(tiny_corpus, tmp_path):
    out = tmp_path / "procs.pt"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(out), "--epochs", "1",
                                   "--batch-size", "32", "--num-random", "1", "--width-anchors", "0", "--procs", "2",
                                   "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.metrics["world_size"] == 2
    d = ck.metrics["rank_param_digests"]
    assert len(d) == 2 and d[0] == d[1]
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(out), "--procs", "0"])
    assert res.exit_code == 1 and "--procs must be between 1 and 64" in res.stderr


def test_calibrate_needs_an_explicit_destination_and_never_shrinks_silently(trained, tiny_corpus, tmp_path):
    from cliutil import one_line_error

    runner = CliRunner()
    before = trained.read_bytes()
    one_line_error(runner.invoke(app, ["calibrate", "--checkpoint", str(trained), "--data-dir", str(tiny_corpus)]),
                   "give --out PATH, or --in-place")
    assert trained.read_bytes() == before  # no default overwrite
    had = len(load_checkpoint(trained).calibration)
    small = tmp_path / "small"  # the same corpus with most training clips gone
    shutil.copytree(tiny_corpus, small)
    listed = set((small / "testing_list.txt").read_text().split()) | set((small / "validation_list.txt").read_text().split())
    for wav in sorted(small.glob("*/*.wav"))[: -4]:
        rel = f"{wav.parent.name}/{wav.name}"
        if rel not in listed and wav.parent.name != "_background_noise_":
            wav.unlink()
    out = tmp_path / "recal.pt"
    res = runner.invoke(app, ["calibrate", "--checkpoint", str(trained), "--data-dir", str(small), "--out", str(out),
                              "--cache-dir", str(tmp_path / "c")])
    one_line_error(res, f"fewer than the {had} the checkpoint carries", "--allow-smaller")
    assert not out.exists()
    res = runner.invoke(app, ["calibrate", "--checkpoint", str(trained), "--data-dir", str(tiny_corpus), "--out", str(out),
                              "--cache-dir", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["recalibrated"]["examples"] == had and doc["checkpoint"] == str(out)


def test_samplers_and_loss_terms_compose():
    """A step is a sampler (which subnets) and loss terms (what each learns from)."""
    import numpy as np

    from edgekws.errors import EdgeKWSError
    from edgekws.step import FixedSpec, Sandwich, StudentsOnly, Targets, combine, loss_terms, make_sampler

    space = get_family("dscnn").space
    rng = np.random.default_rng(0)
    sw = make_sampler(TrainConfig(num_random=3, width_anchors=0), space)
    assert isinstance(sw, Sandwich) and sw.first_from_labels
    drawn = sw.draw(rng)
    assert drawn[:2] == [space.largest(), space.smallest()] and len(drawn) == 5
    spec = space.uniform(0.5)
    assert make_sampler(TrainConfig(fixed_spec=spec.to_dict()), space).draw(rng) == [spec]
    assert isinstance(make_sampler(TrainConfig(fixed_spec=spec.to_dict()), space), FixedSpec)
    with pytest.raises(EdgeKWSError, match="needs --teacher"):
        make_sampler(TrainConfig(sampler="students"), space)
    st = make_sampler(TrainConfig(sampler="students", teacher="t.pt", num_random=2, width_anchors=0), space)
    assert isinstance(st, StudentsOnly) and not st.first_from_labels and len(st.draw(rng)) == 2
    # width anchors: that many of the random subnets are narrow width multipliers at full depth
    narrow = {space.uniform(m) for m in space.width_multipliers if m < 1.0}
    anchored = make_sampler(TrainConfig(num_random=3, width_anchors=1), space)
    draws = [anchored.draw(rng) for _ in range(60)]
    assert all(len(d) == 5 and d[2] in narrow for d in draws)
    assert {d[2] for d in draws} == narrow  # every narrow width is drawn
    assert any(d[3] not in narrow for d in draws)  # the others stay per-stage draws
    default = make_sampler(TrainConfig(), space).draw(rng)  # the default recipe: 3 anchors beside 4 per-stage draws
    assert len(default) == 9 and set(default[2:5]) == narrow
    every = make_sampler(TrainConfig(num_random=4, width_anchors=3), space).draw(rng)
    assert len(every) == 6 and set(every[2:5]) == narrow  # all three narrow widths, once each, then one per-stage draw
    # anchors with drawn depths: still one narrow width for every stage, depths vary, full depth included
    widths = {space.uniform(m).channels for m in space.width_multipliers if m < 1.0}
    drawn = [make_sampler(TrainConfig(num_random=1, width_anchors=1, anchor_depth="per_stage"), space).draw(rng)[2]
             for _ in range(200)]
    assert all(d.channels in widths for d in drawn)
    assert len({d.depths for d in drawn}) > 6 and space.largest().depths in {d.depths for d in drawn}
    from edgekws.train import check_config
    with pytest.raises(EdgeKWSError, match="--width-anchors must be in"):
        check_config(TrainConfig(num_random=2, width_anchors=3))
    with pytest.raises(EdgeKWSError, match="--anchor-depth must be one of full, per_stage"):
        check_config(TrainConfig(num_random=2, width_anchors=1, anchor_depth="half"))

    torch.manual_seed(0)
    logits, soft, y = torch.randn(8, 12), torch.randn(8, 12), torch.randint(0, 12, (8,))
    t = Targets(y, soft, None)
    ce = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    cfg = TrainConfig(small_label_weight=0.5)
    assert torch.allclose(combine(loss_terms(cfg, "student", False), logits, t), 0.5 * kd_kl(logits, soft) + 0.5 * ce)
    assert torch.equal(combine(loss_terms(TrainConfig(small_label_weight=0.0), "student", False), logits, t), kd_kl(logits, soft))
    assert torch.equal(combine(loss_terms(TrainConfig(), "first", False), logits, t), ce)


def test_students_only_fine_tunes_from_a_teacher(trained, tiny_corpus, tmp_path):
    out = tmp_path / "students.pt"
    res = train(tiny_corpus, out, TrainConfig(**{**TINY, "epochs": 1}, sampler="students", teacher=str(trained)),
                cache_dir=trained.parent / "cache", log=lambda m: None)
    ck = load_checkpoint(res.checkpoint)
    assert ck.train_config["sampler"] == "students" and ck.metrics["history"][0]["train_loss"] > 0


def test_init_starts_from_a_checkpoints_weights_and_refuses_another_family(trained, tiny_corpus, tmp_path):
    """`--init` fine-tunes a finished supernet: with lr ~0 the run ends where it began (every
    weight equal to the initial checkpoint's), and a checkpoint of another family is one line."""
    out = tmp_path / "tuned.pt"
    cfg = TrainConfig(**{**TINY, "epochs": 1}, sampler="students", teacher=str(trained), init=str(trained), lr=1e-12,
                      weight_decay=0.0)
    train(tiny_corpus, out, cfg, cache_dir=trained.parent / "cache", log=lambda m: None)
    a, b = load_checkpoint(trained).state_dict, load_checkpoint(out).state_dict
    weights = [k for k in a if "running" not in k and "num_batches" not in k]  # BN statistics are recalibrated
    assert weights and all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)
    assert load_checkpoint(out).train_config["init"] == str(trained)
    kwt = TrainConfig(**{**TINY, "epochs": 1}, family="kwt", init=str(trained))
    with pytest.raises(EdgeKWSError, match="its family differs"):
        train(tiny_corpus, tmp_path / "k.pt", kwt, cache_dir=trained.parent / "cache", log=lambda m: None)
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "c.pt"),
                                   "--family", "kwt", "--init", str(trained), "--epochs", "1"])
    assert res.exit_code == 1 and "its family differs" in res.output and "Traceback" not in res.output


def test_under_torchrun_only_rank_0_reports(tiny_corpus, tmp_path, monkeypatch):
    """Every rank runs the CLI under torchrun; only rank 0 prints the final table."""
    out = tmp_path / "r1.pt"
    args = ["train", "--data-dir", str(tiny_corpus), "--out", str(out), "--epochs", "1", "--batch-size", "32",
            "--num-random", "1", "--width-anchors", "0", "--cache-dir", str(tmp_path / "cache")]
    monkeypatch.setenv("RANK", "1")  # WORLD_SIZE unset: trains alone, reports as rank 1 would
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "test accuracy" not in res.stdout and "wrote" not in res.stdout
    monkeypatch.setenv("RANK", "0")
    res = CliRunner().invoke(app, [*args[:4], str(tmp_path / "r0.pt"), *args[5:]])
    assert res.exit_code == 0 and "test accuracy" in res.stdout and "wrote" in res.stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_keep_freed_memory_applies_on_glibc():
    """The engine's allocator setting (edgekws.alloc) takes on glibc, and repeating it is harmless
    (every training process applies it, a test session many times)."""
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True


def test_draw_fraction_trains_each_per_stage_draw_on_its_share_of_the_batch():
    """--draw-fraction 0.5: the largest, the smallest and the anchors see the whole batch, each
    per-stage draw alternating halves; the step's gradient is exactly what training each spec on
    its rows (with the largest's outputs on those rows as its target) gives."""
    import numpy as np

    from edgekws.errors import EdgeKWSError
    from edgekws.models import create_supernet
    from edgekws.step import make_sampler, train_step
    from edgekws.train import check_config

    space = get_family("dscnn").space
    cfg = TrainConfig(num_random=5, width_anchors=2, draw_fraction=0.5, adaptive_dropout=False)
    sampler = make_sampler(cfg, space)
    specs = sampler.draw(np.random.default_rng(0))
    assert [sampler.rows(k, 32) for k in range(len(specs))] == [None] * 4 + [slice(0, 16), slice(16, 32), slice(0, 16)]
    assert make_sampler(TrainConfig(), space).rows(8, 32) is None  # the default: every subnet sees the whole batch
    assert make_sampler(TrainConfig(draw_fraction=0.01), space).rows(6, 32) == slice(2, 4)  # 2 rows at least (BN)

    torch.manual_seed(0)
    model = create_supernet("dscnn", 12, (49, 40)).eval()  # eval: BN on running stats, no dropout,
    x = torch.randn(32, 49, 40)  # so each spec's loss depends only on its own rows
    batch = {"feats": x, "small": x, "y": torch.randint(0, 12, (32,))}
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    train_step(model, batch, specs, cfg, lambda s: 0.0, rows=sampler.rows)
    hook.remove()
    assert seen == [32] * 4 + [16] * 3
    got = [None if p.grad is None else p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    from edgekws.step import Targets, combine, loss_terms

    model.set_active(specs[0])
    first = model(x)
    combine(loss_terms(cfg, "first", False), first, Targets(batch["y"])).backward()
    for k, spec in enumerate(specs[1:], 1):
        rows = sampler.rows(k, 32) or slice(None)
        model.set_active(spec)
        target = Targets(batch["y"][rows], first.detach()[rows])
        combine(loss_terms(cfg, "student", False), model(x[rows]), target).backward()
    assert all((a is None and p.grad is None) or torch.allclose(a, p.grad, atol=1e-6)
               for a, p in zip(got, model.parameters()))

    for bad in (0.0, 1.5):
        with pytest.raises(EdgeKWSError, match=r"--draw-fraction must be in \(0, 1\]"):
            check_config(TrainConfig(draw_fraction=bad))
    res = CliRunner().invoke(app, ["train", "--data-dir", ".", "--out", "x.pt", "--draw-fraction", "0"])
    assert res.exit_code == 1 and "--draw-fraction must be greater than 0 and at most 1 (got 0.0)" in res.stderr


def test_narrowest_anchor_weight_scales_only_that_anchors_loss():
    """--narrowest-anchor-weight W: the width-0.25 anchor's loss counts W times in the step's
    gradient, every other subnet's (the smallest, also at 0.25, included) once."""
    import numpy as np

    from edgekws.errors import EdgeKWSError
    from edgekws.models import create_supernet
    from edgekws.step import Targets, combine, loss_terms, make_sampler, train_step
    from edgekws.train import check_config

    space = get_family("dscnn").space
    narrowest = space.uniform(min(space.width_multipliers))
    cfg = TrainConfig(num_random=5, width_anchors=3, narrowest_anchor_weight=3.0, adaptive_dropout=False)
    sampler = make_sampler(cfg, space)
    specs = sampler.draw(np.random.default_rng(0))
    weights = [sampler.weight(k, s) for k, s in enumerate(specs)]
    assert weights.count(3.0) == 1 and specs[weights.index(3.0)] == narrowest and 2 <= weights.index(3.0) < 5
    assert specs[1].channels == narrowest.channels and weights[1] == 1.0  # the smallest is not an anchor
    assert all(make_sampler(TrainConfig(), space).weight(k, s) == 1.0 for k, s in enumerate(specs))

    torch.manual_seed(0)
    model = create_supernet("dscnn", 12, (49, 40)).eval()  # no dropout, BN on running stats: deterministic
    x = torch.randn(16, 49, 40)
    batch = {"feats": x, "small": x, "y": torch.randint(0, 12, (16,))}

    def grads(**kw):
        model.zero_grad()
        train_step(model, batch, specs, cfg, lambda s: 0.0, **kw)
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]

    weighted, plain = grads(weights=sampler.weight), grads()
    model.zero_grad()
    model.set_active(specs[0])
    first = model(x).detach()
    model.set_active(narrowest)
    combine(loss_terms(cfg, "student", False), model(x), Targets(batch["y"], first)).backward()
    alone = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
    assert any(a.abs().sum() > 0 for a in alone)
    assert all(torch.allclose(w, p + 2.0 * a, atol=1e-5) for w, p, a in zip(weighted, plain, alone))

    for bad in (0.0, 101.0):
        with pytest.raises(EdgeKWSError, match=r"--narrowest-anchor-weight must be in \(0, 100\]"):
            check_config(TrainConfig(narrowest_anchor_weight=bad))
    with pytest.raises(EdgeKWSError, match="needs --width-anchors 1 or more"):
        check_config(TrainConfig(width_anchors=0, narrowest_anchor_weight=2.0))
    res = CliRunner().invoke(app, ["train", "--data-dir", ".", "--out", "x.pt", "--narrowest-anchor-weight", "-1"])
    assert res.exit_code == 1 and "--narrowest-anchor-weight" in res.stderr and "Traceback" not in res.stderr


def test_family_recipe_defaults(tiny_corpus, tmp_path):
    """A family may register other defaults (kwt: no width anchors, 4 draws, as measured for it):
    `edgekws train --family kwt` without those options runs them and records them; an option given
    wins; dscnn keeps the class defaults."""
    assert (TrainConfig.for_family("dscnn").num_random, TrainConfig.for_family("dscnn").width_anchors) == (7, 3)
    assert TrainConfig.for_family("dscnn") == TrainConfig()
    kwt = TrainConfig.for_family("kwt", epochs=3)
    assert (kwt.family, kwt.num_random, kwt.width_anchors, kwt.epochs) == ("kwt", 4, 0, 3)
    assert TrainConfig.for_family("kwt", width_anchors=3, num_random=7).width_anchors == 3
    with pytest.raises(EdgeKWSError, match="unknown family 'nope'"):
        TrainConfig.for_family("nope")
    with pytest.raises(EdgeKWSError, match="family 'kwt': recipe names no training knob lr_typo"):
        TrainConfig.with_defaults("kwt", (("lr_typo", 1.0), ("num_random", 4)))

    out = tmp_path / "kwt.pt"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(out), "--family", "kwt",
                                   "--epochs", "1", "--batch-size", "32", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    cfg = load_checkpoint(out).train_config
    assert (cfg["num_random"], cfg["width_anchors"]) == (4, 0)


def _start_killable_run(tiny_corpus, tmp_path):
    """A `--procs 2` run that trains until stopped; returned once an epoch has finished, with
    its two ranks' pids in start order (rank 0 first)."""
    import time

    out = tmp_path / "killed.pt"
    state = out.with_name(out.name + ".state")
    cmd = [sys.executable, "-m", "edgekws", "train", "--data-dir", str(tiny_corpus), "--out", str(out),
           "--epochs", "100000", "--batch-size", "32", "--num-random", "1", "--width-anchors", "0", "--procs", "2",
           "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    ranks = sorted(int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "multiprocessing-fork"],
                                                  capture_output=True, text=True).stdout.split())
    return proc, out, state, ranks


@pytest.mark.parametrize("killed", [0, 1])
def test_a_rank_that_dies_ends_a_multi_process_run_with_one_line(tiny_corpus, tmp_path, killed):
    """`--procs 2`: when either rank is killed mid-run, the run ends at once with one line naming
    the process, its pid and what the run kept (the last finished epoch's .state, for --resume),
    exit 1, no traceback. Rank 0 is killed too: the other rank then fails in a collective (or gloo
    aborts it), a symptom the line must not name instead of the cause. Before every rank was
    spawned, rank 0 trained in the command's own process and gloo aborted it (SIGABRT, once in CI)."""
    import signal

    proc, out, state, ranks = _start_killable_run(tiny_corpus, tmp_path)
    try:
        assert state.exists(), "no epoch finished"
        assert len(ranks) == 2
        os.kill(ranks[killed], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert lines == [f"error: training process {killed} of 2 (pid {ranks[killed]}) was killed by SIGKILL before the "
                     f"run finished; {state} keeps the last finished epoch: rerun with --resume to continue"], stderr[-2000:]
    assert state.exists() and not out.exists()


def test_ranks_stop_when_the_command_that_started_them_is_gone(tiny_corpus, tmp_path):
    """The ranks are the command's children: killed with SIGKILL, it can clean nothing up, so
    rank 0 checks at every step that it is still there, and the other ranks follow rank 0 —
    no training goes on orphaned, holding the .state."""
    import signal
    import time

    proc, out, state, ranks = _start_killable_run(tiny_corpus, tmp_path)
    try:
        assert state.exists() and len(ranks) == 2
        proc.kill()
        proc.wait(timeout=60)  # not communicate(): orphaned ranks would hold its pipes open

        def running(pid: int) -> bool:  # a zombie left for an init that does not reap has ended too
            try:
                return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
            except FileNotFoundError:
                return False

        deadline = time.monotonic() + 120  # a liveness bound, not a timing claim
        while any(running(p) for p in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(running(p) for p in ranks)
    finally:
        for p in ranks:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.stdout.close()
        proc.stderr.close()
    assert not out.exists()


def test_a_spawned_rank_sends_its_own_error_to_the_supervisor(tmp_path):
    """A spawned rank that fails exits 1 and sends its one-line error, tagged 'user' (an
    EdgeKWSError), to the process that started it (which puts it in the run's error), so a
    failure only that rank met is named, not just its exit code. Run in a fresh interpreter: the
    rank joins a real one-process gloo group before it fails."""
    code = f"""
import queue, socket
from pathlib import Path
from edgekws.train import LocalRanks, TrainConfig, _local_rank_main, _rank_errors
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
q = queue.SimpleQueue()
try:
    _local_rank_main(LocalRanks(0, 1, port), Path({str(tmp_path / 'missing')!r}), Path({str(tmp_path / 'x.pt')!r}),
                     TrainConfig(), None, False, 1, 5, q)
except SystemExit as e:
    print("exit", e.code)
print(_rank_errors(q))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == ["exit 1", repr({0: ("user", f"data folder '{tmp_path / 'missing'}' does not exist")})]
    assert res.stderr == ""


def test_kd_ladder_teaches_each_width_anchor_from_the_next_wider():
    """`kd_ladder`: the width anchors run widest first, and each learns from the next wider
    uniform subnet of its step (0.75 from the largest, 0.5 from 0.75, 0.25 from 0.5); the
    smallest and the per-stage draws still learn from the largest. Checked against the losses
    written out by hand, float64."""
    from dataclasses import replace

    import numpy as np

    from edgekws.models import create_supernet
    from edgekws.step import Targets, combine, loss_terms, make_sampler, train_step

    space = get_family("dscnn").space
    cfg = replace(TrainConfig(), kd_ladder=True, adaptive_dropout=False)
    sampler = make_sampler(cfg, space)
    ladder = {s: m for m, s in space.width_multiplier_specs().items()}
    specs = next(d for d in (sampler.draw(np.random.default_rng(seed)) for seed in range(50))
                 if [ladder[s] for s in d[2:5]] != [0.75, 0.5, 0.25])  # anchors drawn out of order
    torch.manual_seed(0)
    model = create_supernet("dscnn", 12, (49, 40)).double().eval()  # no dropout, BN on running stats
    x = torch.randn(8, 49, 40, dtype=torch.float64)
    y = torch.randint(0, 12, (8,))
    train_step(model, {"feats": x, "small": x, "y": y}, specs, cfg, lambda s: 0.0)
    got = [None if p.grad is None else p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    out = {}
    for s in specs:
        model.set_active(s)
        out[s] = model(x)
    combine(loss_terms(cfg, "first", False), out[specs[0]], Targets(y)).backward(retain_graph=True)
    for s in specs[1:]:
        teacher = space.uniform(min(m for m in (0.5, 0.75, 1.0) if m > ladder[s])) if s in ladder else specs[0]
        combine(loss_terms(cfg, "student", False), out[s], Targets(y, out[teacher].detach())).backward(retain_graph=True)
    assert all((a is None and p.grad is None) or torch.allclose(a, p.grad, rtol=1e-9, atol=1e-12)
               for a, p in zip(got, model.parameters()))
    assert not TrainConfig().kd_ladder  # off by default
    from edgekws.errors import EdgeKWSError
    from edgekws.train import check_config

    with pytest.raises(EdgeKWSError, match="--kd-ladder teaches the width anchors"):
        check_config(replace(TrainConfig(), kd_ladder=True, width_anchors=0))


def test_input_norm_trains_into_the_checkpoints_architecture(tiny_corpus, tmp_path):
    """`--input-norm` is recorded twice — as a training knob (so `--resume` checks it) and in the
    checkpoint's `arch` (so every loader, extraction and export rebuilds the layer); checkpoints
    made before the option (the shipped supernet) load without it. Bad values and a family
    without the option are one line."""
    from edgekws.assets import DEFAULT_CHECKPOINT

    out = tmp_path / "norm.pt"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(out), "--epochs", "1",
                                   "--batch-size", "32", "--num-random", "1", "--width-anchors", "0",
                                   "--input-norm", "spectral_shape", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.arch["input_norm"] == "spectral_shape" and ck.train_config["input_norm"] == "spectral_shape"
    net = ck.supernet()
    assert net.input_norm.mode == "spectral_shape"
    net.set_active(ck.space.uniform(0.25))
    assert net.get_active_subnet().input_norm.mode == "spectral_shape"
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(out), "--data-dir", str(tiny_corpus), "--width", "0.5",
                                   "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["info", "--checkpoint", str(out)])
    assert res.exit_code == 0 and "input normalisation: spectral_shape (a layer of the model" in res.stdout, res.output
    # the export's graph has the layer, its gates ran on it, and the manifest tells a port so
    res = CliRunner().invoke(app, ["export", "--checkpoint", str(out), "--width", "0.25", "--formats", "tflite",
                                   "--precision", "float", "--out", str(tmp_path / "export"), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["manifest"]
    assert m["input"]["normalisation"].startswith("spectral_shape: the model itself subtracts") and m["validation"]["passed"]
    assert load_checkpoint(DEFAULT_CHECKPOINT).supernet().input_norm.mode == "none"
    for args, msg in ((["--input-norm", "cmvn"], "error: --input-norm must be one of none, band_mean, spectral_shape (got 'cmvn')"),
                      (["--init", str(out), "--batch-size", "32", "--cache-dir", str(tmp_path / "cache")],
                       f"error: --init {out}: its architecture differs from this run's; it cannot start it")):
        res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "bad.pt"),
                                       "--epochs", "1", *args])
        assert res.exit_code == 1 and res.stderr.strip() == msg, res.output
    assert not (tmp_path / "bad.pt").exists()
    # KWT has the layer too (its model, extraction and lowering tests are in test_models and
    # test_lowering); a family without the field is one line (test_toy_family)
    from edgekws.train import family_for

    kwt = family_for(TrainConfig(family="kwt", input_norm="band_mean"))
    assert kwt.arch.input_norm == "band_mean" and kwt.supernet().input_norm.mode == "band_mean"


def test_kwt_embed_trains_into_the_checkpoints_architecture(tiny_corpus, tmp_path):
    """kwt's default recipe has the convolutional stem (`Family.recipe`): it is recorded as a
    training knob and in the checkpoint's `arch`, so loaders, extraction and exports rebuild it;
    checkpoints made before the choice load with the linear embedding; a family without the choice
    and a bad value are one line each, and nothing is written."""
    from edgekws.assets import SHIPPED_SUPERNETS
    from edgekws.models.kwt import ConvEmbed

    out = tmp_path / "kwt.pt"
    res = CliRunner().invoke(app, ["train", "--family", "kwt", "--data-dir", str(tiny_corpus), "--out", str(out),
                                   "--epochs", "1", "--batch-size", "32", "--num-random", "1",
                                   "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.arch["embed"] == "conv" and ck.train_config["embed"] == "conv"
    net = ck.supernet()
    net.set_active(ck.space.uniform(0.25))
    assert isinstance(net.get_active_subnet().stem, ConvEmbed)
    res = CliRunner().invoke(app, ["info", "--checkpoint", str(out)])
    assert res.exit_code == 0 and "token embedding: conv (a convolutional stem" in res.stdout, res.output
    res = CliRunner().invoke(app, ["export", "--checkpoint", str(out), "--width", "0.25", "--formats", "tflite",
                                   "--precision", "float", "--out", str(tmp_path / "export"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["manifest"]["validation"]["passed"]
    assert load_checkpoint(SHIPPED_SUPERNETS["kwt"]).arch["embed"] == "conv"
    before = Path(__file__).resolve().parent.parent / "benchmarks" / "runs" / "kwt_draws7_150ep" / "kwt_draws7.pt"
    legacy = load_checkpoint(before)  # trained before the choice existed: no `embed` in its arch
    assert "embed" not in legacy.arch and isinstance(legacy.supernet().stem, torch.nn.Identity)
    for args, msg in ((["--embed", "conv"], "error: --embed: family 'dscnn' has no choice of token embedding (kwt has)"),
                      (["--family", "kwt", "--embed", "patch"], "error: --embed must be one of linear, conv (got 'patch')")):
        res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "bad.pt"),
                                       "--epochs", "1", *args])
        assert res.exit_code == 1 and res.stderr.strip() == msg, res.output
    assert not (tmp_path / "bad.pt").exists()


def test_train_once_twins_take_the_supernets_recipe(tiny_corpus, tmp_path):
    """benchmarks/train_once.py with --supernet trains each twin on that supernet's recipe (here
    `--input-norm band_mean --channel-augment`, a smaller batch), minus the supernet-only knobs,
    under a file name that says how it differs from the default; an earlier results file whose
    twins ran another recipe is refused by name."""
    sup = tmp_path / "sup.pt"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(sup), "--epochs", "1",
                                   "--batch-size", "32", "--num-random", "1", "--width-anchors", "1",
                                   "--input-norm", "band_mean", "--channel-augment", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    script = [sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "train_once.py"),
              "--data-dir", str(tiny_corpus), "--epochs", "1", "--supernet", str(sup), "--widths", "0.25",
              "--procs", "1", "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache")]
    out = subprocess.run([*script, "--results", str(tmp_path / "results")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    twin_path = tmp_path / "work" / "twin_0.25_1ep_batch_size-32_channel_augment-True_input_norm-band_mean.pt"
    twin = load_checkpoint(twin_path)
    assert twin.train_config["input_norm"] == "band_mean" and twin.train_config["channel_augment"] is True
    assert twin.train_config["batch_size"] == 32 and twin.arch["input_norm"] == "band_mean"
    assert twin.train_config["fixed_spec"] == get_family("dscnn").space.uniform(0.25).to_dict()
    row, = json.loads((tmp_path / "results" / "train_once_dscnn_1ep.json").read_text())["rows"]
    assert row["width"] == 0.25 and row["twin"] == twin.metrics["test"]["fixed"]["accuracy"]
    assert row["supernet"] == load_checkpoint(sup).metrics["test"]["width_0.25"]["accuracy"]
    # the committed twins ran the default recipe for 150 epochs: not this supernet's twins
    earlier = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "train_once_dscnn_150ep_v5.json"
    out = subprocess.run([*script, "--twins-from", str(earlier), "--results", str(tmp_path / "r2")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "twins were trained with another recipe" in out.stderr
    assert "'input_norm': ('none', 'band_mean')" in out.stderr and not (tmp_path / "r2").exists()
