"""Nothing lost, nothing cryptic: atomic replace, temp clean-up, validated numbers, honest exit
codes and one-line errors for damaged inputs (each class of the hardening issue)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cliutil import one_line_error

from edgekws.cli import app
from edgekws.errors import EdgeKWSError

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


# -- atomic replace and temp files ----------------------------------------------------------------

def test_replace_dir_never_exposes_a_partial_folder(tmp_path, monkeypatch):
    """The new folder is renamed in after the old one is moved aside; if that rename fails the
    old one is put back — `dest` is always whole (old or new)."""
    from edgekws import fileio

    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "model.tflite").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "model.tflite").write_text("new")
    real = os.replace
    calls = []

    def failing_second(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(fileio.os, "replace", failing_second)
    with pytest.raises(OSError):
        fileio.replace_dir(new, dest)
    monkeypatch.setattr(fileio.os, "replace", real)
    assert (dest / "model.tflite").read_text() == "old"
    assert not list(tmp_path.glob(".export.*"))  # the aside copy is cleaned up
    fileio.replace_dir(new, dest)
    assert (dest / "model.tflite").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    from edgekws.fileio import atomic_dir

    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(dest, overwrite=True) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in dest.iterdir()] == ["keep"]


def test_stale_temp_files_are_aged_out(tmp_path):
    from edgekws.fileio import atomic_dir, sweep_stale

    old_dir = tmp_path / ".out.abc.tmp"
    old_dir.mkdir()
    (old_dir / "x").write_text("x")
    old_file = tmp_path / ".out.def.tmp"
    old_file.write_text("x")
    young = tmp_path / ".out.ghi.tmp"
    young.write_text("x")
    past = time.time() - 3 * 24 * 3600
    for p in (old_dir, old_file):
        os.utime(p, (past, past))
    assert sorted(p.name for p in sweep_stale(tmp_path, ".out.*")) == [".out.abc.tmp", ".out.def.tmp"]
    assert young.exists()
    os.utime(young, (past, past))
    with atomic_dir(tmp_path / "out") as t:  # every atomic folder write sweeps its own leftovers
        (t / "f").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.tts
def test_synth_leaves_no_scratch_files(tmp_path):
    from edgekws.synth import synthesize

    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("edgekws-synth-*"))
    synthesize(tmp_path / "c", 6, seed=0, workers=2)
    assert set(tmp.glob("edgekws-synth-*")) <= before


def test_failed_commands_leave_no_folder_they_created(tmp_path):
    out = tmp_path / "new" / "deeper"
    one_line_error(runner.invoke(app, ["export", "--width", "0.5", "--checkpoint", str(tmp_path / "none.pt"),
                                       "--out", str(out)]), "does not exist")
    one_line_error(runner.invoke(app, ["train", "--data-dir", str(tmp_path / "nodata"), "--out", str(out / "x.pt"),
                                       "--epochs", "1"]), "does not exist")
    one_line_error(runner.invoke(app, ["data", "pack", "--data-dir", str(tmp_path / "nodata"), "--out",
                                       str(out / "p.npz")]), "does not exist")
    assert list(tmp_path.iterdir()) == []


# -- numbers at the edge --------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["train", "-d", "D", "-o", "x.pt", "--epochs", "0"], "--epochs must be between 1 and 100000 (got 0)"),
    (["train", "-d", "D", "-o", "x.pt", "--lr", "nan"], "--lr must be greater than 0 and at most 10 (got nan)"),
    (["train", "-d", "D", "-o", "x.pt", "--threads", "-1"], "--threads must be between 1 and 1024"),
    (["train", "-d", "D", "-o", "x.pt", "--small-label-weight", "2"], "--small-label-weight must be between 0 and 1"),
    (["train", "-d", "D", "-o", "x.pt", "--num-random", "2", "--width-anchors", "3"],
     "--width-anchors must be in [0, --num-random = 2] (got 3)"),
    (["data", "pack", "-d", "D", "-o", "p.npz", "--examples", "-1"], "--examples must be between 1 and 1000000"),
    (["data", "synth", "-o", "c", "--workers", "0"], "--workers must be between 1 and 256"),
    (["profile", "--width", "0.5", "--runs", "0"], "--runs must be between 1 and 100000"),
    (["export", "--width", "0", "--out", "e"], "width multiplier 0.0 is outside (0, 1]; the trained ones are 0.25"),
    (["export", "--width", "nan", "--out", "e"], "width multiplier nan is outside (0, 1]"),
    (["export", "--width", "0.5", "--min-agreement", "inf"], "--min-agreement must be between 0 and 1"),
    (["eval", "-d", "D", "--depth", "0"], "--depth must be between 1 and 64"),
])
def test_numbers_are_validated_where_they_enter(tmp_path, args, needle):
    res = runner.invoke(app, args)
    one_line_error(res, needle)


@pytest.mark.parametrize("budget,needle", [("-5.0", "got -5.0"), ("nan", "got nan"), ("0", "got 0"), ("inf", "got inf")])
def test_target_budgets_must_be_positive_and_finite(tmp_path, budget, needle):
    from edgekws.targets import load_target

    text = (ROOT / "edgekws/assets/targets/pi4.toml").read_text().replace("max_p95_latency_ms = 5.0",
                                                                          f"max_p95_latency_ms = {budget}")
    p = tmp_path / "t.toml"
    p.write_text(text)
    with pytest.raises(EdgeKWSError, match="budgets.max_p95_latency_ms' must be a finite number greater than 0"):
        load_target(p)
    p.write_text(text.replace("threads = 2", "thread = 2"))
    with pytest.raises(EdgeKWSError, match="missing key 'threads'"):
        load_target(p)
    p.write_text(text.replace("[budgets]", "runtimes = 1\n[budgets]").replace(f"= {budget}", "= 5.0"))
    with pytest.raises(EdgeKWSError, match="unknown key"):
        load_target(p)


# -- damaged inputs: one line, the user's path, nothing cryptic -----------------------------------

def test_text_inputs_with_a_bad_byte_or_wrong_json_type(tmp_path):
    (tmp_path / "a[").mkdir()
    spec = tmp_path / "a[" / "][bold]spec.json"  # a path holding "[/]" and "[bold]": printed verbatim
    assert "[/][bold]" in str(spec)
    spec.write_bytes(b'{"family": "dscnn", \xff}')
    one_line_error(runner.invoke(app, ["info", "--spec", str(spec)]), str(spec), "not UTF-8", "0xff")
    spec.write_text("[1, 2]")
    one_line_error(runner.invoke(app, ["info", "--spec", str(spec)]), "a spec is a JSON object")
    spec.write_text("[" * 50_000)
    one_line_error(runner.invoke(app, ["info", "--spec", str(spec)]), "nested too deeply")
    target = tmp_path / "t.toml"
    target.write_bytes(b"name = \"\xfe\"\n")
    one_line_error(runner.invoke(app, ["profile", "--width", "0.5", "--target", str(target)]), "not UTF-8")
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"name": "m", "accounting": []}')
    one_line_error(runner.invoke(app, ["profile", str(folder)]), "key 'accounting' must be a table")


def test_empty_and_nan_checkpoints(tmp_path):
    import torch

    from edgekws.assets import DEFAULT_CHECKPOINT

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    one_line_error(runner.invoke(app, ["info", "--checkpoint", str(empty)]), "empty file (0 bytes)")
    payload = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    key = sorted(payload["state_dict"])[0]
    payload["state_dict"][key] = torch.full_like(payload["state_dict"][key], float("nan"))
    nan = tmp_path / "nan.pt"
    torch.save(payload, nan)
    one_line_error(runner.invoke(app, ["export", "--width", "0.5", "--checkpoint", str(nan), "--out", str(tmp_path / "e")]),
                   f"weight '{key}' holds NaN")


def test_damaged_training_state_is_one_line(tmp_path):
    import torch

    from edgekws.recipe import TrainConfig
    from edgekws.train import load_state

    state = tmp_path / "x.pt.state"
    state.write_bytes(b"PK\x03\x04garbage")
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    with pytest.raises(EdgeKWSError, match="not a readable training state .*; delete it or start afresh"):
        load_state(state, TrainConfig(), net, opt)
    torch.save({"config": {**TrainConfig().to_dict(), "lr": 1.0}}, state)
    with pytest.raises(EdgeKWSError, match=r"another training config \(lr: state 1\.0, this run 0\.003\); pass the same"):
        load_state(state, TrainConfig(), net, opt)
    torch.save({"config": {k: v for k, v in TrainConfig().to_dict().items() if k != "small_label_weight"},
                "model": {}, "optimizer": {}}, state)  # older state (no new knob): accepted as default
    with pytest.raises(EdgeKWSError, match="damaged training state"):
        load_state(state, TrainConfig(), net, opt)
    # a state from before width anchors existed ran with none, not with today's default of 3
    legacy = {k: v for k, v in TrainConfig(num_random=4).to_dict().items() if k != "width_anchors"}
    torch.save({"config": legacy, "model": {}, "optimizer": {}}, state)
    with pytest.raises(EdgeKWSError, match="another training config"):
        load_state(state, TrainConfig(num_random=4), net, opt)
    with pytest.raises(EdgeKWSError, match="damaged training state"):  # the recipe check passed
        load_state(state, TrainConfig(num_random=4, width_anchors=0), net, opt)
    assert TrainConfig.recorded(legacy).width_anchors == 0 and TrainConfig.recorded(TrainConfig().to_dict()) == TrainConfig()
    torch.save({"config": {**TrainConfig().to_dict(), "knob_from_the_future": 1}}, state)
    with pytest.raises(EdgeKWSError, match=r"another training config \(knobs this edgekws does not know: knob_from_the_future\)"):
        load_state(state, TrainConfig(), net, opt)


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 16-64 KiB tmpfs: a real full disk (needs root to mount)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tiny tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)])


def test_disk_full_while_saving_a_checkpoint(tiny_disk):
    import torch

    from edgekws.checkpoint import CheckpointError, save_torch

    (tiny_disk / "ck.pt").write_bytes(b"previous")
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*no space left on device"):
        save_torch({"w": torch.zeros(100_000)}, tiny_disk / "ck.pt", "checkpoint")
    assert (tiny_disk / "ck.pt").read_bytes() == b"previous"  # the old file is untouched
    assert [p.name for p in tiny_disk.iterdir()] == ["ck.pt"]  # and no temp is left


@pytest.mark.tts
def test_a_damaged_feature_cache_is_rebuilt(tiny_corpus, tmp_path):
    from edgekws.data import SpeechCommands, load_split

    ds = SpeechCommands.open(tiny_corpus)
    first = load_split(ds, "testing", cache_dir=tmp_path)
    want = np.array(first.features)
    (npy,) = tmp_path.glob("*/features.npy")
    npy.write_bytes(npy.read_bytes()[:200])  # truncated by a crash or a full disk
    again = load_split(ds, "testing", cache_dir=tmp_path)
    assert np.array_equal(np.array(again.features), want)


# -- rough edges ----------------------------------------------------------------------------------

def test_version_alone():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("edgekws ")


@pytest.mark.tflite
def test_wheel_install_finds_its_targets(tmp_path):
    """A real wheel, installed outside the source tree: the tier files travel as package data,
    and `profile --target pi4` runs from it."""
    src = tmp_path / "src"  # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "edgekws", src / "edgekws", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, capture_output=True)
    (wheel,) = wheels.glob("edgekws-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import edgekws; print(edgekws.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    res = subprocess.run([sys.executable, "-m", "edgekws", "profile", "--width", "0.25", "--target", "pi4",
                          "--runs", "5", "--warmup", "1", "--json"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '"target": "pi4"' in res.stdout


def test_every_command_help_has_an_example():
    import typer.main

    group = typer.main.get_command(app)
    commands = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            commands.append(path)

    walk(group, [])
    assert len(commands) >= 14
    for path in commands:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0 and "Example:" in res.stdout, path
    res = runner.invoke(app, ["bench", "--help"])
    assert "Example:" in res.stdout


def test_host_target_describes_the_running_machine():
    from edgekws.targets import get_target, host_facts

    t = get_target("host_x86")
    facts = host_facts()
    assert t.cpu == facts["cpu"] and t.cores == os.cpu_count() and "auto" not in t.cpu
    assert t.memory_mb > 0


def test_write_errors_name_the_users_path_not_a_temp_name(tiny_disk):
    from edgekws.fileio import atomic_dir, write_bytes_atomic

    with pytest.raises(EdgeKWSError) as e:
        write_bytes_atomic(tiny_disk / "big.bin", b"x" * 100_000)
    assert str(e.value) == f"cannot write '{tiny_disk / 'big.bin'}': No space left on device"
    with pytest.raises(EdgeKWSError) as e:
        with atomic_dir(tiny_disk / "export") as tmp:
            (tmp / "model.tflite").write_bytes(b"x" * 100_000)
    assert str(e.value) == f"cannot write '{tiny_disk / 'export'}': No space left on device"
    assert list(tiny_disk.iterdir()) == []
