"""The Speech Commands loader on a real (synthetic) corpus, in both protocols."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from edgekws.data import NOISE_SPANS, SILENCE, UNKNOWN, SpeechCommands, load_split, speakers
from edgekws.errors import DataError, EdgeKWSError
from edgekws.synth import KEYWORDS


def test_12_class_protocol(tiny_corpus):
    ds = SpeechCommands.open(tiny_corpus, "12", seed=0)
    assert ds.protocol.labels[:2] == (SILENCE, UNKNOWN)
    assert ds.protocol.labels[2:] == KEYWORDS
    seen: dict[str, set[str]] = {}
    for name in ("train", "validation", "testing"):
        sp = ds.split(name)
        counts = sp.counts()
        n_kw = sum(counts[k] for k in KEYWORDS)
        assert counts[UNKNOWN] == min(math.ceil(n_kw * 0.1), counts[UNKNOWN])
        assert counts[UNKNOWN] > 0
        assert counts[SILENCE] == math.ceil(n_kw * 0.1)
        seen[name] = {e.path for e in sp.examples if e.path}
        # silence is cut only from this split's share of each background recording
        lo, hi = NOISE_SPANS[name]
        for e in sp.examples:
            if not e.path:
                total = len(ds.noise(e.noise))
                assert lo * total <= e.offset and e.offset + 16000 <= hi * total + 1
    assert not (seen["train"] & seen["testing"]) and not (seen["validation"] & seen["testing"])
    assert not (speakers(seen["train"]) & speakers(seen["testing"]))


def test_35_class_protocol(tiny_corpus):
    ds = SpeechCommands.open(tiny_corpus, "35")
    assert len(ds.protocol.labels) == 35
    total = sum(len(ds.split(s)) for s in ("train", "validation", "testing"))
    assert total == 160  # every clip, no silence, no unknown sampling


def test_pinned_order_is_seeded_and_stable(tiny_corpus):
    a = [e.key for e in SpeechCommands.open(tiny_corpus, "12", seed=0).split("testing").examples]
    b = [e.key for e in SpeechCommands.open(tiny_corpus, "12", seed=0).split("testing").examples]
    c = [e.key for e in SpeechCommands.open(tiny_corpus, "12", seed=1).split("testing").examples]
    assert a == b and a != c
    sub = SpeechCommands.open(tiny_corpus, "12").split("testing").subset(5)
    assert [e.key for e in sub.examples] == a[:5]
    with pytest.raises(EdgeKWSError, match="has"):
        SpeechCommands.open(tiny_corpus, "12").split("testing").subset(10_000)


def test_load_and_cache(tiny_corpus, cache_dir):
    ds = SpeechCommands.open(tiny_corpus, "12")
    first = load_split(ds, "validation", cache_dir=cache_dir)
    assert first.features.shape == (len(first.targets), 49, 40)
    assert first.waves.dtype == np.int16
    again = load_split(ds, "validation", cache_dir=cache_dir)  # from the memory-mapped cache
    assert isinstance(again.features, np.memmap)
    np.testing.assert_array_equal(first.features, again.features)
    np.testing.assert_array_equal(first.targets, again.targets)
    sil = [i for i, k in enumerate(first.keys) if k.startswith(SILENCE)]
    assert sil and np.abs(first.waves[sil[0]]).max() > 0


def test_folder_with_only_testing_list(tiny_corpus, tmp_path):
    root = tmp_path / "evalonly"
    shutil.copytree(tiny_corpus, root)
    (root / "validation_list.txt").unlink()
    ds = SpeechCommands.open(root, "12")
    assert ds.available_splits() == ["train", "testing"]
    assert len(ds.split("testing")) > 0
    with pytest.raises(DataError, match="no validation_list.txt"):
        ds.split("validation")


def test_folder_without_lists_is_refused(tiny_corpus, tmp_path):
    root = tmp_path / "nolists"
    shutil.copytree(tiny_corpus, root)
    (root / "validation_list.txt").unlink()
    (root / "testing_list.txt").unlink()
    with pytest.raises(DataError, match="neither validation_list.txt nor testing_list.txt"):
        SpeechCommands.open(root)


def test_list_naming_a_missing_clip(tiny_corpus, tmp_path):
    root = tmp_path / "dangling"
    shutil.copytree(tiny_corpus, root)
    with open(root / "testing_list.txt", "a") as f:
        f.write("yes/ffffffff_nohash_9.wav\n")
    with pytest.raises(DataError, match=r"testing_list.txt:\d+: 'yes/ffffffff_nohash_9.wav'"):
        SpeechCommands.open(root)


def test_unknown_protocol_and_missing_folder(tmp_path, tiny_corpus):
    with pytest.raises(EdgeKWSError, match="valid: 12, 35"):
        SpeechCommands.open(tiny_corpus, "20")
    with pytest.raises(DataError, match="does not exist"):
        SpeechCommands.open(tmp_path / "nope")


def test_atomic_dir_replaces_by_rename_and_keeps_the_old_folder_on_failure(tmp_path):
    from edgekws.fileio import atomic_dir

    dest = tmp_path / "out"
    with atomic_dir(dest) as t:
        (t / "a").write_text("1")
    with atomic_dir(dest, overwrite=True) as t:
        (t / "a").write_text("2")
    assert (dest / "a").read_text() == "2"
    with pytest.raises(RuntimeError):
        with atomic_dir(dest, overwrite=True) as t:
            (t / "a").write_text("3")
            raise RuntimeError("build failed")
    assert (dest / "a").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or moved-aside folder left
