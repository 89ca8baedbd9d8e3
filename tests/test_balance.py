"""Engine-balanced epochs (`edgekws.balance`): the shares, the order, and `--engine-balance` on a
real corpus made by the real TTS engines."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgekws.balance import NO_ENGINE, epoch_order, epoch_shares, example_engines, read_engines
from edgekws.checkpoint import load_checkpoint
from edgekws.cli import app
from edgekws.data import SpeechCommands
from edgekws.errors import DataError

group_sizes = st.dictionaries(st.sampled_from(["espeak", "flite", "festival", "mimic", NO_ENGINE]),
                              st.integers(1, 300), min_size=1)


def _groups(sizes: dict[str, int]) -> np.ndarray:
    return np.array([g for g, k in sizes.items() for _ in range(k)])


@settings(max_examples=60, deadline=None)
@given(group_sizes, st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_an_epoch_keeps_its_length_and_the_silence_share(sizes, power, seed):
    groups = _groups(sizes)
    shares = epoch_shares(groups, power)
    assert sum(shares.values()) == len(groups)
    assert shares.get(NO_ENGINE) == sizes.get(NO_ENGINE)  # no engine: its natural share, whatever the power
    order = epoch_order(len(groups), groups, power, np.random.default_rng(seed))
    assert len(order) == len(groups) and order.min() >= 0 and order.max() < len(groups)
    drawn = {g: int((groups[order] == g).sum()) for g in sizes}
    assert drawn == {g: shares[g] for g in sizes}
    for g, k in sizes.items():  # every clip of a group before any repeats, none more than once too often
        per_clip = np.bincount(order[groups[order] == g], minlength=len(groups))[groups == g]
        assert per_clip.max() - per_clip.min() <= 1 and per_clip.sum() == shares[g]


@settings(max_examples=40, deadline=None)
@given(group_sizes, st.integers(0, 2**32 - 1))
def test_power_0_is_the_plain_permutation_and_power_1_an_equal_share(sizes, seed):
    groups = _groups(sizes)
    plain = epoch_order(len(groups), groups, 0.0, np.random.default_rng([seed, 3]))
    assert (plain == np.random.default_rng([seed, 3]).permutation(len(groups))).all()  # bit-identical to before
    assert epoch_shares(groups, 0.0) == sizes
    equal = [k for g, k in epoch_shares(groups, 1.0).items() if g != NO_ENGINE]
    assert not equal or max(equal) - min(equal) <= 1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.floats(0.01, 1))
def test_more_power_gives_the_smaller_engine_more_of_the_epoch(small, extra, power):
    groups = _groups({"festival": small, "espeak": small + extra})
    lo, hi = epoch_shares(groups, 0.0)["festival"], epoch_shares(groups, power)["festival"]
    assert lo <= hi <= epoch_shares(groups, 1.0)["festival"]


def test_engine_balance_trains_from_the_corpus_engines(tiny_corpus, tmp_path):
    """`--engine-balance` reads each clip's engine from meta.csv, says the epoch's shares, and is
    recorded as a training knob (so `--resume` checks it); without meta.csv it is one line,
    before any decoding, and no checkpoint is written."""
    with open(tiny_corpus / "meta.csv", newline="") as f:
        meta = {r["path"]: r for r in csv.DictReader(f)}
    out = tmp_path / "bal.pt"
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_corpus), "--out", str(out), "--epochs", "1",
                                   "--batch-size", "32", "--num-random", "1", "--width-anchors", "0",
                                   "--engine-balance", "1", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("engine balance: "))
    said = {part.split()[0]: (int(part.split()[1]), int(part.split()[3])) for part in line[len("engine balance: "):].split(", ")}
    keys = [e.key for e in SpeechCommands.open(tiny_corpus, "12", 0).split("train").examples]
    in_split = [meta[k]["engine"] if k in meta else NO_ENGINE for k in keys]  # the split's own clips (a tenth
    train_engines = sorted(set(in_split) - {NO_ENGINE})                       # of the unknown words), not meta's
    assert sorted(g for g in said if g != NO_ENGINE) == train_engines and len(train_engines) >= 2
    for g in [*train_engines, NO_ENGINE]:
        assert said[g][1] == in_split.count(g)
    assert said[NO_ENGINE][0] == said[NO_ENGINE][1]  # silence keeps its share
    spoken = [said[g][0] for g in train_engines]
    assert max(spoken) - min(spoken) <= 1 and sum(spoken) == sum(said[g][1] for g in train_engines)
    ck = load_checkpoint(out)
    assert ck.train_config["engine_balance"] == 1.0

    bare = tmp_path / "bare"
    shutil.copytree(tiny_corpus, bare)
    (bare / "meta.csv").unlink()
    noengine = tmp_path / "noengine"  # a meta.csv without the column: refused up front, not after decoding
    shutil.copytree(tiny_corpus, noengine)
    (noengine / "meta.csv").write_text("path,voice\nyes/a.wav,kal\n")
    for args, msg in ((["--data-dir", str(bare), "--engine-balance", "0.5"],
                       f"error: --engine-balance needs each clip's engine, from the meta.csv that `edgekws data synth` "
                       f"writes; '{bare}' has none"),
                      (["--data-dir", str(noengine), "--engine-balance", "1"],
                       f"error: --engine-balance needs each clip's engine: {noengine / 'meta.csv'}: no 'path' and 'engine' columns"),
                      (["--data-dir", str(tiny_corpus), "--engine-balance", "1.5"], None)):
        res = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path / "bad.pt"), "--epochs", "1"])
        assert res.exit_code != 0 and "Traceback" not in res.output
        if msg:
            assert res.stderr.strip() == msg
        else:
            assert "--engine-balance" in res.output and "1.5" in res.output
    assert not (tmp_path / "bad.pt").exists()


def test_a_clip_missing_from_meta_is_an_error_not_a_guess(tiny_corpus):
    with open(tiny_corpus / "meta.csv", newline="") as f:
        first = next(csv.DictReader(f))
    engines = read_engines(tiny_corpus)
    assert list(example_engines(engines, [first["path"], "_silence_/white.wav@100"], tiny_corpus)) == [first["engine"], NO_ENGINE]
    with pytest.raises(DataError, match=r"1 training clips are not in .*meta.csv \(first: 'yes/nowhere.wav'\)"):
        example_engines(engines, [first["path"], "yes/nowhere.wav"], tiny_corpus)


def test_loeo_views_carry_the_engines_for_engine_balance(tiny_corpus, tmp_path):
    """The held-out views link the corpus's meta.csv, so `loeo --engine-balance` balances the
    engines that remain; views made before that are refused in one line, not half-used."""
    res = CliRunner().invoke(app, ["loeo", "--data-dir", str(tiny_corpus), "--engine", "flite", "--out",
                                   str(tmp_path / "loeo"), "--epochs", "1", "--engine-balance", "1", "--json",
                                   "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["train_config"]["engine_balance"] == 1.0
    line = next(ln for ln in res.output.splitlines() if ln.startswith("engine balance: "))
    assert "flite" not in line and "espeak" in line
    (tmp_path / "loeo" / "views" / "train" / "meta.csv").unlink()  # as views made before the option
    res = CliRunner().invoke(app, ["loeo", "--data-dir", str(tiny_corpus), "--engine", "flite", "--out",
                                   str(tmp_path / "loeo"), "--epochs", "1", "--engine-balance", "1"])
    assert res.exit_code == 1 and "has no meta.csv (use --force to rebuild it)" in res.stderr
    assert "Traceback" not in res.output
