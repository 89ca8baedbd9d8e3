"""Google Speech Commands v2 loader — the real folder and the synthetic one, treated identically.

Two protocols:
- `12`: the standard KWS benchmark — `_silence_`, `_unknown_` and the ten keywords, in the order
  of TensorFlow's speech_commands recipe. Per split, `_unknown_` is sampled from the non-keyword
  words and `_silence_` is cut from `_background_noise_/`, each at 10 % of the split's keyword
  clips (rounded up), as in that recipe.
- `35`: every word is its own class, no silence and no unknown.

Splits come from `validation_list.txt` and `testing_list.txt`; every other clip is training data.
At least one list must exist (an evaluation folder with only `testing_list.txt` is fine).

Reproducibility: every choice (which unknown clips, where silence is cut, the order of a split)
is a function of the seed and the clips' relative paths — not of file-system order or of the
number of workers — so calibration and evaluation subsets (`Split.subset(n)`) are pinned.
Silence never crosses splits: each background recording is cut in time, the first 80 % for
training, the next 10 % for validation, the last 10 % for testing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgekws.audio import read_wav
from edgekws.errors import DataError, EdgeKWSError
from edgekws.features import FeatureConfig, fit_length
from edgekws.fileio import atomic_path, ensure_writable_dir, load_json, read_text
from edgekws.synth import ALL_WORDS, KEYWORDS

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_DIR = "_background_noise_"
SPLITS = ("train", "validation", "testing")
LIST_FILES = {"validation": "validation_list.txt", "testing": "testing_list.txt"}
# Time share of each background recording used for each split's silence.
NOISE_SPANS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "testing": (0.9, 1.0)}


@dataclass(frozen=True)
class Protocol:
    name: str
    labels: tuple[str, ...]
    unknown_pct: float = 0.0
    silence_pct: float = 0.0

    def label_of(self, word: str) -> int | None:
        """Class index of a word folder, or None when the protocol drops it."""
        if word in self.labels:
            return self.labels.index(word)
        if UNKNOWN in self.labels:
            return self.labels.index(UNKNOWN)
        return None


PROTOCOLS = {
    "12": Protocol("12", (SILENCE, UNKNOWN, *KEYWORDS), unknown_pct=10.0, silence_pct=10.0),
    "35": Protocol("35", tuple(sorted(ALL_WORDS))),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[str(name)]
    except KeyError:
        raise EdgeKWSError(f"unknown protocol '{name}' (valid: {', '.join(PROTOCOLS)})") from None


def clip_column(corpus: Path, column: str) -> dict[str, str]:
    """path → one column of the corpus's meta.csv (engine, voice, speaker, …), which `edgekws data
    synth` writes: what leave-one-engine-out and engine-balanced epochs know of each clip."""
    meta = Path(corpus) / "meta.csv"
    if not meta.is_file():
        raise DataError(f"'{corpus}' has no meta.csv: it needs a corpus made by `edgekws data synth`")
    try:
        rows = list(csv.DictReader(io.StringIO(read_text(meta, "corpus metadata"), newline="")))
    except csv.Error as exc:
        raise DataError(f"{meta}: not a readable CSV ({exc})") from None
    if not rows or column not in rows[0] or "path" not in rows[0]:
        raise DataError(f"{meta}: no 'path' and '{column}' columns")
    return {r["path"]: r[column] for r in rows}


@dataclass(frozen=True)
class Example:
    """One item of a split: a clip (`path`) or a silence cut (`noise`, `offset`, `gain`)."""

    label: int
    path: str = ""  # relative to the data folder, e.g. "yes/0a1b2c3d_nohash_0.wav"
    noise: str = ""  # background file name for silence
    offset: int = 0
    gain: float = 0.0

    @property
    def key(self) -> str:
        return self.path or f"{SILENCE}/{self.noise}@{self.offset}"


def order_key(seed: int, name: str, purpose: str = "order") -> str:
    """The pinned, seeded sort key: stable when files are added, independent of listing order.

    Each use gets its own `purpose` salt. With one key for both, the `_unknown_` clips chosen as
    the smallest keys would also sort first, and every leading subset (calibration and evaluation
    packs) would be mostly unknown words — as a first version was: its 512-example calibration
    set was all `_unknown_`, and its 1000-example pack scored 77.6 % where the split scored 83.7 %.
    """
    # "unknown" keeps the unsalted key of the first version, so that published splits (and the
    # shipped supernet's test metrics) keep the same _unknown_ clips.
    salt = "" if purpose == "unknown" else f"{purpose}:"
    return hashlib.sha1(f"{salt}{seed}:{name}".encode()).hexdigest()


@dataclass
class Split:
    name: str
    examples: list[Example]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, n: int) -> "Split":
        """The first n examples of the pinned order (calibration and evaluation packs)."""
        if n > len(self.examples):
            raise EdgeKWSError(f"asked for {n} examples but split '{self.name}' has {len(self.examples)}")
        return Split(self.name, self.examples[:n], self.labels)

    def counts(self) -> dict[str, int]:
        c = {lab: 0 for lab in self.labels}
        for e in self.examples:
            c[self.labels[e.label]] += 1
        return c


@dataclass
class SpeechCommands:
    """A GSC-layout folder under one protocol. Construction only lists files; audio is read lazily."""

    root: Path
    protocol: Protocol
    seed: int = 0
    words: dict[str, list[str]] = field(default_factory=dict)  # word -> sorted relative paths
    lists: dict[str, set[str]] = field(default_factory=dict)
    noise_files: list[str] = field(default_factory=list)
    _noise_len: dict[str, int] = field(default_factory=dict, repr=False)
    _noise_audio: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: Path, protocol: str = "12", seed: int = 0) -> "SpeechCommands":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"data folder '{root}' does not exist")
        proto = get_protocol(protocol)
        words: dict[str, list[str]] = {}
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            wavs = sorted(f"{d.name}/{f.name}" for f in d.iterdir() if f.suffix.lower() == ".wav")
            if wavs:
                words[d.name] = wavs
        if not words:
            raise DataError(f"'{root}' has no word folders with .wav files (expected the Speech Commands layout)")
        if proto.name == "35":
            extra = sorted(set(words) - set(proto.labels))
            if extra:
                raise DataError(
                    f"'{root}': word folder(s) {', '.join(extra)} are not among the 35 GSC words; use --protocol 12"
                )
        all_paths = {p for ps in words.values() for p in ps}
        lists: dict[str, set[str]] = {}
        for split, fname in LIST_FILES.items():
            lf = root / fname
            if not lf.exists():
                continue
            entries = set()
            for n, line in enumerate(read_text(lf, "list file").splitlines(), 1):
                line = line.strip()
                if not line:
                    continue
                if line not in all_paths:
                    raise DataError(f"{lf}:{n}: '{line}' is listed but there is no such clip")
                entries.add(line)
            lists[split] = entries
        if not lists:
            raise DataError(
                f"'{root}' has neither validation_list.txt nor testing_list.txt; "
                "splits can't be told apart (see `edgekws data synth` for the layout)"
            )
        noise_dir = root / BACKGROUND_DIR
        noise = sorted(f.name for f in noise_dir.glob("*.wav")) if noise_dir.is_dir() else []
        return cls(root, proto, seed, words, lists, noise)

    def available_splits(self) -> list[str]:
        """Splits that have at least one example under this protocol."""
        return [s for s in SPLITS if (s == "train" or s in self.lists) and len(self.split(s)) > 0]

    def _split_of(self, path: str) -> str:
        for split in ("validation", "testing"):
            if path in self.lists.get(split, ()):
                return split
        return "train"

    def split(self, name: str) -> Split:
        """All examples of a split in the pinned order."""
        if name not in SPLITS:
            raise EdgeKWSError(f"unknown split '{name}' (valid: {', '.join(SPLITS)})")
        if name != "train" and name not in self.lists:
            raise DataError(f"'{self.root}' has no {LIST_FILES[name]}, so it has no {name} split")
        proto = self.protocol
        keyword_ex, unknown_ex = [], []
        for word, paths in self.words.items():
            label = proto.label_of(word)
            if label is None:
                continue
            for p in paths:
                if self._split_of(p) != name:
                    continue
                (unknown_ex if proto.labels[label] == UNKNOWN else keyword_ex).append(Example(label, path=p))
        examples = list(keyword_ex)
        if UNKNOWN in proto.labels:
            n_unknown = math.ceil(len(keyword_ex) * proto.unknown_pct / 100)
            unknown_ex.sort(key=lambda e: order_key(self.seed, e.path, "unknown"))
            examples += unknown_ex[:n_unknown]
        if SILENCE in proto.labels:
            examples += self._silence(name, math.ceil(len(keyword_ex) * proto.silence_pct / 100))
        examples.sort(key=lambda e: order_key(self.seed, e.key))
        return Split(name, examples, proto.labels)

    def _silence(self, split: str, n: int) -> list[Example]:
        label = self.protocol.labels.index(SILENCE)
        if not self.noise_files:  # no recordings: digital silence
            return [Example(label, noise="", offset=i, gain=0.0) for i in range(n)]
        lo, hi = NOISE_SPANS[split]
        out = []
        for i in range(n):
            rng = np.random.default_rng([self.seed, SPLITS.index(split), i])
            fname = self.noise_files[i % len(self.noise_files)]
            length = self._noise_length(fname)
            a, b = int(lo * length), int(hi * length) - 16000
            offset = int(rng.integers(a, max(a + 1, b)))
            out.append(Example(label, noise=fname, offset=offset, gain=round(float(rng.uniform(0.0, 1.0)), 4)))
        return out

    def _noise_length(self, fname: str) -> int:
        cache = self._noise_len
        if fname not in cache:
            import wave

            try:
                with wave.open(str(self.root / BACKGROUND_DIR / fname), "rb") as w:
                    cache[fname] = w.getnframes()
            except (wave.Error, EOFError, OSError) as exc:
                raise DataError(f"{self.root / BACKGROUND_DIR / fname}: not a readable WAV ({exc})") from None
        return cache[fname]

    def noise(self, fname: str, sample_rate: int = 16000) -> np.ndarray:
        cache = self._noise_audio
        if fname not in cache:
            cache[fname] = read_wav(self.root / BACKGROUND_DIR / fname, sample_rate)
        return cache[fname]

    def noise_span(self, split: str, sample_rate: int = 16000) -> list[np.ndarray]:
        """Each background recording's part reserved for `split` (training's waveform augmentation)."""
        lo, hi = NOISE_SPANS[split]
        out = []
        for f in self.noise_files:
            x = self.noise(f, sample_rate)
            out.append(x[int(lo * len(x)) : int(hi * len(x))])
        return out

    def load(self, ex: Example, sample_rate: int = 16000, clip_samples: int = 16000) -> np.ndarray:
        """The example's waveform, float32, exactly `clip_samples` long."""
        if ex.path:
            return fit_length(read_wav(self.root / ex.path, sample_rate), clip_samples)
        if not ex.noise:
            return np.zeros(clip_samples, dtype=np.float32)
        x = self.noise(ex.noise, sample_rate)
        return (fit_length(x[ex.offset : ex.offset + clip_samples], clip_samples) * ex.gain).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Feature cache


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEKWS_CACHE", Path.home() / ".cache" / "edgekws"))


@dataclass
class CachedSplit:
    """A split decoded once: int16 waveforms (for waveform augmentation) and clean features."""

    name: str
    labels: tuple[str, ...]
    keys: list[str]
    targets: np.ndarray  # (N,) int64
    waves: np.ndarray  # (N, clip_samples) int16
    features: np.ndarray  # (N, frames, n_mels) float32


def _cache_key(ds: SpeechCommands, split: Split, cfg: FeatureConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"cfg": cfg.to_dict(), "protocol": ds.protocol.name, "seed": ds.seed,
                         "split": split.name, "root": str(ds.root.resolve()), "v": 1}, sort_keys=True).encode())
    for e in split.examples:
        h.update(e.key.encode())
        if e.path:
            st = (ds.root / e.path).stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_split(ds: SpeechCommands, name: str, cfg: FeatureConfig = FeatureConfig(),
               cache_dir: Path | None = None, batch: int = 512) -> CachedSplit:
    """Decode a split and compute its features once; later calls memory-map the cache."""
    import torch

    from edgekws.features import LogMel

    split = ds.split(name)
    if len(split) == 0:
        raise DataError(f"'{ds.root}': split '{name}' is empty")
    folder = ensure_writable_dir((cache_dir or default_cache_dir()) / _cache_key(ds, split, cfg))
    files = {k: folder / f"{k}.npy" for k in ("waves", "features", "targets")}
    if all(f.exists() for f in files.values()):
        try:
            arrays = {k: np.load(f, mmap_mode="r", allow_pickle=False) for k, f in files.items()}
            want = {"waves": (len(split), cfg.clip_samples), "features": (len(split), *cfg.shape), "targets": (len(split),)}
            if all(arrays[k].shape == shape for k, shape in want.items()):
                return CachedSplit(name, split.labels, [e.key for e in split.examples], np.asarray(arrays["targets"]),
                                   arrays["waves"], arrays["features"])
        except Exception:  # noqa: BLE001 — numpy's header parser raises SyntaxError, TokenError...
            pass  # a damaged cache (truncated, overwritten): rebuilt below, replaced by rename
    waves = np.empty((len(split), cfg.clip_samples), dtype=np.int16)
    for i, ex in enumerate(split.examples):
        x = ds.load(ex, cfg.sample_rate, cfg.clip_samples)
        waves[i] = np.clip(np.round(x * 32768.0), -32768, 32767)
    frontend = LogMel(cfg)
    feats = np.empty((len(split), *cfg.shape), dtype=np.float32)
    for s in range(0, len(split), batch):
        feats[s : s + batch] = frontend(torch.from_numpy(waves[s : s + batch].astype(np.float32) / 32768.0)).numpy()
    targets = np.array([e.label for e in split.examples], dtype=np.int64)
    for k, arr in (("waves", waves), ("features", feats), ("targets", targets)):
        with atomic_path(files[k]) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
    return CachedSplit(name, split.labels, [e.key for e in split.examples], targets, waves, feats)


def dataset_stats(ds: SpeechCommands, check_audio: bool = True) -> dict:
    """Per-split label counts (and, with `check_audio`, every clip read once to prove it decodes)."""
    out: dict = {"root": str(ds.root), "protocol": ds.protocol.name, "labels": list(ds.protocol.labels),
                 "words": {w: len(p) for w, p in ds.words.items()}, "background_noise": ds.noise_files, "splits": {}}
    for name in ds.available_splits():
        sp = ds.split(name)
        out["splits"][name] = {"examples": len(sp), "counts": sp.counts()}
    if check_audio:
        n = 0
        for paths in ds.words.values():
            for p in paths:
                read_wav(ds.root / p)
                n += 1
        for f in ds.noise_files:
            ds.noise(f)
        out["clips_checked"] = n
    meta = ds.root / "corpus.json"
    if meta.exists():  # optional: what `data synth` recorded; unreadable is said, not fatal
        try:
            info = load_json(meta, "corpus metadata")
            out["voices_per_split"] = info.get("voices_per_split") if isinstance(info.get("voices_per_split"), dict) else None
        except EdgeKWSError as exc:
            out["corpus_json_error"] = str(exc)
    return out


def speakers(paths: Sequence[str]) -> set[str]:
    """GSC speaker ids (the part before `_nohash_`) of a list of clip paths."""
    return {Path(p).name.split("_nohash_")[0] for p in paths}
