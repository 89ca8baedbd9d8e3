"""The corpus generator, run for real with espeak-ng, flite, festival and sox."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgekws.audio import read_wav
from edgekws.errors import EdgeKWSError
from edgekws.synth import ALL_WORDS, BACKGROUND_TYPES, KEYWORDS, assign_splits, available_voices, plan_corpus, synthesize


pytestmark = pytest.mark.tts


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_audio_format(tiny_corpus):
    root = tiny_corpus
    for name in ("validation_list.txt", "testing_list.txt", "meta.csv", "corpus.json"):
        assert (root / name).is_file(), name
    for kind in BACKGROUND_TYPES:
        noise = read_wav(root / "_background_noise_" / f"{kind}.wav")
        assert len(noise) == 60 * 16000
        assert 0.05 < float(np.sqrt(np.mean(noise**2))) < 0.2
    rows = list(csv.DictReader(open(root / "meta.csv")))
    assert len(rows) == 160
    assert {r["word"] for r in rows} <= set(ALL_WORDS)
    assert {r["engine"] for r in rows} == {"espeak", "flite", "festival"}
    for r in rows[:40]:
        x = read_wav(root / r["path"])
        assert len(x) == 16000
        assert r["path"].startswith(r["word"] + "/")
        assert hashlib.sha256((root / r["path"]).read_bytes()).hexdigest() == r["sha256"]
        # the word is really there: the loudest 100 ms is well above the quietest 100 ms
        frames = np.sqrt(np.mean(x.reshape(10, 1600) ** 2, axis=1))
        assert frames.max() > 2 * frames.min() + 1e-4


def test_splits_are_voice_disjoint(tiny_corpus):
    rows = list(csv.DictReader(open(tiny_corpus / "meta.csv")))
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["speaker"])
    names = sorted(by_split)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not (by_split[a] & by_split[b]), (a, b)
    listed = {
        "validation": set((tiny_corpus / "validation_list.txt").read_text().split()),
        "testing": set((tiny_corpus / "testing_list.txt").read_text().split()),
    }
    for r in rows:
        assert (r["path"] in listed["validation"]) == (r["split"] == "validation")
        assert (r["path"] in listed["testing"]) == (r["split"] == "testing")


def test_speaker_groups_share_a_split():
    voices = available_voices()
    split_of = assign_splits(voices, seed=0)
    # flite kal/kal16 and festival kal_diphone are one speaker, so one split
    kal = {split_of[v.speaker] for v in voices if v.speaker == "kal"}
    assert len(kal) == 1
    assert len(voices) > 300  # espeak-ng English voices × variants
    held_out = [s for s in split_of.values() if s != "train"]
    assert 0.1 < len(held_out) / len(split_of) < 0.3
    # engines with a handful of speakers train only (one held-out voice would dominate a split)
    assert all(split_of[v.speaker] == "train" for v in voices if v.engine in ("flite", "festival"))
    assert {split_of[v.speaker] for v in voices if v.engine == "espeak"} == {"train", "validation", "testing"}


def test_plan_is_pure_and_keyword_weighted():
    voices = available_voices()
    a = plan_corpus(3000, 5, voices)
    assert a == plan_corpus(3000, 5, voices)
    assert a != plan_corpus(3000, 6, voices)
    words = [p.word for p in a]
    kw = np.mean([words.count(w) for w in KEYWORDS])
    aux = np.mean([words.count(w) for w in ALL_WORDS if w not in KEYWORDS])
    assert 2.4 < kw / aux < 3.6


def test_deterministic_across_runs_and_worker_counts(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(a, 24, seed=3, workers=1)
    synthesize(b, 24, seed=3, workers=2)
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert ha == hb
    assert len(ha) > 24


def test_resume_keeps_valid_clips_and_redoes_broken(tmp_path):
    out = tmp_path / "c"
    synthesize(out, 20, seed=1, workers=2)
    before = tree_hashes(out)
    rows = list(csv.DictReader(open(out / "meta.csv")))
    # one clip deleted, one truncated mid-write, one overwritten with garbage
    (out / rows[0]["path"]).unlink()
    p1 = out / rows[1]["path"]
    p1.write_bytes(p1.read_bytes()[:1000])
    (out / rows[2]["path"]).write_bytes(b"not a wav at all")
    rep = synthesize(out, 20, seed=1, workers=2)
    assert (rep.generated, rep.kept) == (3, 17)
    assert tree_hashes(out) == before


def test_interrupted_run_partial_meta_is_resumed(tmp_path):
    """Simulate a crash: meta.csv never written, partial rows (with a torn last line) remain."""
    out = tmp_path / "c"
    synthesize(out, 12, seed=2, workers=1)
    full = tree_hashes(out)
    lines = (out / "meta.csv").read_text().splitlines()
    (out / "meta.partial.csv").write_text("\n".join(lines[:8]) + "\n" + lines[8][:30])
    (out / "meta.csv").unlink()
    rep = synthesize(out, 12, seed=2, workers=1)
    assert rep.kept == 7 and rep.generated == 5
    assert tree_hashes(out) == full
    assert not (out / "meta.partial.csv").exists()


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgeKWSError, match="cannot create output folder"):
        synthesize(blocker / "corpus", 4)


def test_corpus_json_describes_the_run(tiny_corpus):
    info = json.loads((tiny_corpus / "corpus.json").read_text())
    assert info["seed"] == 0 and info["clips"] == 160
    assert sum(info["clips_per_split"].values()) == 160
    assert info["voices_per_split"]["train"] > info["voices_per_split"]["testing"] > 0
