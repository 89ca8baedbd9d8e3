"""The CLI through typer's CliRunner: real commands, real files, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
from typer.testing import CliRunner

from cliutil import one_line_error

from edgekws.cli import app

runner = CliRunner()


def test_help_is_instant_and_light():
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", "import sys, edgekws.cli; print(sorted(m for m in ('torch','tensorflow','onnxruntime','scipy') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
    res = subprocess.run([sys.executable, "-m", "edgekws", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "data" in res.stdout
    assert time.perf_counter() - t0 < 10


def test_synth_stats_features(tmp_path):
    corpus = tmp_path / "c"
    res = runner.invoke(app, ["data", "synth", "--out", str(corpus), "--clips", "30", "--seed", "4", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "30 clips" in res.output
    res = runner.invoke(app, ["data", "stats", "--data-dir", str(corpus), "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["clips_checked"] == 30
    assert set(stats["splits"]) <= {"train", "validation", "testing"}
    res = runner.invoke(app, ["data", "features", "--data-dir", str(corpus), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "49×40" in res.output
    # rerunning synth on a complete corpus generates nothing
    res = runner.invoke(app, ["data", "synth", "--out", str(corpus), "--clips", "30", "--seed", "4"])
    assert res.exit_code == 0 and "0 generated, 30 kept" in res.output


def test_bad_inputs_get_one_line_errors(tmp_path, tiny_corpus):
    one_line_error(runner.invoke(app, ["data", "stats", "--data-dir", str(tmp_path / "missing")]), "does not exist")
    one_line_error(runner.invoke(app, ["data", "stats", "--data-dir", str(tiny_corpus), "--protocol", "7"]), "valid: 12, 35")
    blocker = tmp_path / "f"
    blocker.write_text("x")
    one_line_error(runner.invoke(app, ["data", "synth", "--out", str(blocker / "sub"), "--clips", "2"]), "cannot create output folder")
    one_line_error(runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "z"), "--clips", "0"]), "--clips")

    broken = tmp_path / "broken"
    shutil.copytree(tiny_corpus, broken)
    victim = sorted((broken / "yes").glob("*.wav"))[0]
    victim.write_bytes(victim.read_bytes()[:700])
    one_line_error(runner.invoke(app, ["data", "stats", "--data-dir", str(broken)]), str(victim), "truncated")

    stereo = sorted((broken / "no").glob("*.wav"))[0]
    import wave

    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(32000, np.int16).tobytes())
    victim.unlink()
    (broken / "testing_list.txt").write_text("".join(
        ln + "\n" for ln in (broken / "testing_list.txt").read_text().split() if ln != f"yes/{victim.name}"))
    (broken / "validation_list.txt").write_text("".join(
        ln + "\n" for ln in (broken / "validation_list.txt").read_text().split() if ln != f"yes/{victim.name}"))
    one_line_error(runner.invoke(app, ["data", "features", "--data-dir", str(broken), "--cache-dir", str(tmp_path / "k")]),
                   str(stereo), "channels")

    (broken / "testing_list.txt").unlink()
    (broken / "validation_list.txt").unlink()
    one_line_error(runner.invoke(app, ["data", "stats", "--data-dir", str(broken)]), "neither validation_list.txt")


def test_failed_train_writes_nothing_to_stdout(tmp_path):
    """The progress bar draws only on a terminal: elsewhere (a pipe, a log) it left a blank line,
    so a run that failed before its first epoch printed more than its one-line error."""
    res = runner.invoke(app, ["train", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "m.pt")])
    one_line_error(res, "does not exist")
    assert res.stdout == ""
    assert not (tmp_path / "m.pt").exists()
