"""A realistic synthetic Speech Commands v2 corpus, made offline from Debian's TTS engines.

No real speech can be downloaded here, so edgekws makes its own: every GSC word spoken by hundreds
of voices (espeak-ng's English voices × its variants, flite's voices, festival's kal/ked/slt), with
the nuisances that make keyword spotting hard — speaking rate, pitch, loudness, position in the
second, room reverb and background noise at a random SNR.

Design choices that matter downstream:
- **Voice-disjoint splits.** Splits are assigned per *speaker*, not per clip, so a test score is a
  score on unseen voices. Voices of one underlying speaker (flite's `kal`/`kal16` and festival's
  `kal_diphone`; flite's and festival's `slt`) form one speaker group and share a split. Engines
  with only a handful of speakers (flite, festival) train only: see MIN_SPEAKERS_TO_HOLD_OUT.
- **Deterministic.** Every clip's parameters come from `default_rng([seed, index])`; the engines and
  sox are deterministic (sox runs with dither off), so a seed gives the same bytes whatever the
  number of workers or the order they finish in.
- **Resumable.** Clips are written atomically and their metadata appended to `meta.partial.csv` as
  they finish; a rerun keeps every clip whose WAV is valid and whose row is present, and redoes the
  rest.
- **Noise kept apart.** The noise mixed *into* clips comes from a private noise bank drawn with
  another seed stream than the published `_background_noise_/` files, so training augmentation
  with `_background_noise_` is not a leak of the test clips' noise.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgekws.audio import read_wav, to_pcm16, wav_bytes, write_wav
from edgekws.errors import AudioError, EdgeKWSError
from edgekws.fileio import ensure_writable_dir, sweep_stale, write_bytes_atomic, write_json_atomic, write_text_atomic

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
AUX_WORDS = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
    "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward", "forward",
    "follow", "learn", "visual",
)
ALL_WORDS = KEYWORDS + AUX_WORDS
DEFAULT_CLIPS = 32000
GENERATOR_VERSION = 2

# Keywords are drawn 3x as often as auxiliary words: the 12-class protocol uses every keyword clip
# but only ~10 % of the data as `_unknown_`, so keyword clips are what training needs most.
KEYWORD_WEIGHT = 3.0
# Share of clips per engine. espeak-ng is fast and has hundreds of voices; festival costs ~0.5 s a
# call, so it gets a small share to keep the corpus near 20 clips/s on 2 cores.
ENGINE_WEIGHTS = {"espeak": 0.68, "flite": 0.22, "festival": 0.10}
SPLIT_SHARES = {"train": 0.8, "validation": 0.1, "testing": 0.1}
BACKGROUND_SECONDS = 60
BACKGROUND_TYPES = ("white_noise", "pink_noise", "brown_noise", "mains_hum", "fan", "running_tap", "babble")

ESPEAK_BASES = (
    "en", "en-US", "en-GB-scotland", "en-GB-x-gbclan", "en-GB-x-rp", "en-GB-x-gbcwmd", "en-029",
    "en-US-nyc",
)
# Voice name -> speaker group. Same group = same recorded speaker = same split.
FLITE_VOICES = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}
FESTIVAL_VOICES = {
    "kal_diphone": "kal",
    "ked_diphone": "ked",
    "cmu_us_slt_arctic_hts": "slt",
}
# Sentences for babble noise: no keyword and no auxiliary word appears in them.
_BABBLE_TEXT = (
    "the weather was mild that afternoon and the market was busy",
    "please bring the paper to the kitchen when you have a minute",
    "she said the train was late again this morning",
    "we should plan the meeting for the end of the month",
    "the children were playing in the garden until dinner",
    "my brother bought a new bicycle last week",
    "there is a small cafe near the station with good coffee",
    "they painted the fence white before the summer",
    "it took a while to find the right book in the library",
    "the museum opens at ten and closes early in winter",
    "he forgot his umbrella and walked home in the rain",
    "the radio played an old song about the sea",
)


@dataclass(frozen=True)
class Voice:
    """One TTS voice. `speaker` groups voices of the same underlying speaker."""

    engine: str
    name: str
    speaker: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def speaker_hash(self) -> str:
        """8 hex digits, the `<speaker>_nohash_<n>.wav` prefix GSC uses."""
        return hashlib.sha1(self.id.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render one clip, drawn from `default_rng([seed, index])`."""

    index: int
    path: str  # relative, e.g. "yes/0a1b2c3d_nohash_0.wav"
    word: str
    split: str
    voice: Voice
    rate_wpm: int  # espeak speaking rate
    pitch: int  # espeak pitch 0..99
    tempo: float  # sox tempo for flite/festival (1.0 = unchanged)
    pitch_cents: int  # sox pitch shift for flite/festival
    level_dbfs: float  # speech RMS after levelling
    offset_frac: float  # where the word sits in the free part of the second, 0..1
    reverb_rt60: float  # 0 = dry
    reverb_wet: float
    noise_type: str  # "" = clean
    snr_db: float
    noise_offset_frac: float


@dataclass
class SynthReport:
    out: Path
    planned: int
    generated: int
    kept: int
    seconds: float
    per_split: dict[str, int] = field(default_factory=dict)
    voices_per_split: dict[str, int] = field(default_factory=dict)

    @property
    def clips_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Voices and engines


def _run(cmd: Sequence[str], stdin: bytes | None = None) -> bytes:
    try:
        res = subprocess.run(cmd, input=stdin, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise EdgeKWSError(
            f"'{cmd[0]}' is not installed; run `make setup` (installs espeak-ng, flite, festival, sox)"
        ) from None
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise EdgeKWSError(f"{cmd[0]} failed: {err[-1] if err else 'exit ' + str(res.returncode)}")
    return res.stdout


def _espeak_variants() -> list[str]:
    out = _run(["espeak-ng", "--voices=variant"]).decode()
    names = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[4].startswith("!v/"):
            names.append(parts[4][3:])
    return sorted(set(names))


def _festival_voice_dirs() -> set[str]:
    found = set()
    for root in (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")):
        if root.is_dir():
            found.update(p.name for p in root.glob("*/*") if p.is_dir())
    return found


def available_voices() -> list[Voice]:
    """Every installed voice, sorted by id. Missing engines are an error: the corpus would differ."""
    for tool in ("espeak-ng", "flite", "text2wave", "sox"):
        if shutil.which(tool) is None:
            raise EdgeKWSError(
                f"'{tool}' is not installed; run `make setup` (installs espeak-ng, flite, festival, sox)"
            )
    voices = [Voice("espeak", base, f"espeak:{base}") for base in ESPEAK_BASES]
    voices += [
        Voice("espeak", f"{base}+{var}", f"espeak:{base}+{var}")
        for base in ESPEAK_BASES
        for var in _espeak_variants()
    ]
    flite_have = set(_run(["flite", "-lv"]).decode().split(":", 1)[-1].split())
    voices += [Voice("flite", n, g) for n, g in FLITE_VOICES.items() if n in flite_have]
    fest_have = _festival_voice_dirs()
    voices += [Voice("festival", n, g) for n, g in FESTIVAL_VOICES.items() if n in fest_have]
    return sorted(voices, key=lambda v: v.id)


# Engines with fewer distinct speakers than this train only. flite and festival have 5 speakers
# between them (kal, awb, rms, slt, ked) and each holds ~2,000 clips: holding one out made it 28 %
# of the test split, so the test score measured one voice (slt: 43 % against 94.5 % on unseen
# espeak-ng voices, measured on a 32k corpus). Their voices widen training; the held-out splits
# are unseen espeak-ng voices.
MIN_SPEAKERS_TO_HOLD_OUT = 20


def assign_splits(voices: Iterable[Voice], seed: int) -> dict[str, str]:
    """Speaker group -> split. In engines with enough speakers, ~10 % of speakers go to each
    held-out split; speakers of engines with fewer than MIN_SPEAKERS_TO_HOLD_OUT train only."""
    by_engine: dict[str, list[str]] = {}
    for v in voices:
        by_engine.setdefault(v.engine, [])
        if v.speaker not in by_engine[v.engine]:
            by_engine[v.engine].append(v.speaker)
    assignment: dict[str, str] = {}
    for engine in sorted(by_engine):
        speakers = sorted(s for s in by_engine[engine] if s not in assignment)
        rng = np.random.default_rng([seed, int(hashlib.sha1(engine.encode()).hexdigest()[:8], 16)])
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        n = len(order)
        hold = n >= MIN_SPEAKERS_TO_HOLD_OUT
        n_test = max(1, round(n * SPLIT_SHARES["testing"])) if hold else 0
        n_val = max(1, round(n * SPLIT_SHARES["validation"])) if hold else 0
        for i, s in enumerate(order):
            assignment[s] = "testing" if i < n_test else "validation" if i < n_test + n_val else "train"
    return assignment


def plan_corpus(n_clips: int, seed: int, voices: Sequence[Voice]) -> list[ClipPlan]:
    """Draw every clip's parameters. Pure function of (n_clips, seed, voices)."""
    if n_clips < 1:
        raise EdgeKWSError(f"--clips must be at least 1 (got {n_clips})")
    split_of = assign_splits(voices, seed)
    pools: dict[tuple[str, str], list[Voice]] = {}
    for v in voices:
        pools.setdefault((split_of[v.speaker], v.engine), []).append(v)
    word_p = np.array([KEYWORD_WEIGHT if w in KEYWORDS else 1.0 for w in ALL_WORDS])
    word_p /= word_p.sum()
    splits = list(SPLIT_SHARES)
    split_p = np.array([SPLIT_SHARES[s] for s in splits])
    engines = list(ENGINE_WEIGHTS)
    noise_types = list(BACKGROUND_TYPES)
    counters: dict[tuple[str, str], int] = {}
    plans = []
    for i in range(n_clips):
        rng = np.random.default_rng([seed, i])
        word = ALL_WORDS[rng.choice(len(ALL_WORDS), p=word_p)]
        split = splits[rng.choice(len(splits), p=split_p)]
        avail = [e for e in engines if pools.get((split, e))]
        ep = np.array([ENGINE_WEIGHTS[e] for e in avail])
        engine = avail[rng.choice(len(avail), p=ep / ep.sum())]
        pool = pools[(split, engine)]
        voice = pool[rng.integers(len(pool))]
        key = (voice.speaker_hash, word)
        n = counters.get(key, 0)
        counters[key] = n + 1
        reverb = rng.random() < 0.5
        noisy = rng.random() < 0.85
        plans.append(
            ClipPlan(
                index=i,
                path=f"{word}/{voice.speaker_hash}_nohash_{n}.wav",
                word=word,
                split=split,
                voice=voice,
                rate_wpm=int(rng.integers(120, 231)),
                pitch=int(rng.integers(15, 86)),
                tempo=round(float(rng.uniform(0.85, 1.25)), 3),
                pitch_cents=int(rng.integers(-300, 301)),
                level_dbfs=round(float(rng.uniform(-34.0, -14.0)), 2),
                offset_frac=round(float(rng.random()), 4),
                reverb_rt60=round(float(rng.uniform(0.15, 0.8)), 3) if reverb else 0.0,
                reverb_wet=round(float(rng.uniform(0.1, 0.6)), 3) if reverb else 0.0,
                noise_type=noise_types[rng.integers(len(noise_types))] if noisy else "",
                snr_db=round(float(rng.uniform(5.0, 35.0)), 2) if noisy else 0.0,
                noise_offset_frac=round(float(rng.random()), 4),
            )
        )
    return plans


# --------------------------------------------------------------------------------------------
# Noise


def _shaped_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    f[0] = f[1]
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _bandpass(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    spec[(f < lo) | (f > hi)] = 0.0
    return np.fft.irfft(spec, len(x))


def _babble(rng: np.random.Generator, n: int, voices: Sequence[Voice], streams: int = 6) -> np.ndarray:
    espeak = [v for v in voices if v.engine == "espeak"]
    out = np.zeros(n)
    with tempfile.TemporaryDirectory(prefix="edgekws-babble-") as tmp:
        for _ in range(streams):
            chunks, total = [], 0
            while total < n:
                v = espeak[rng.integers(len(espeak))]
                text = _BABBLE_TEXT[rng.integers(len(_BABBLE_TEXT))]
                wav = Path(tmp) / "b.wav"
                _run(["espeak-ng", "-v", v.name, "-s", str(int(rng.integers(140, 200))), "-w", str(wav), text])
                x = _sox_to_float(wav, [])
                chunks.append(x)
                total += len(x)
            stream = np.concatenate(chunks)[:n]
            out += np.roll(stream, int(rng.integers(n))) / (np.sqrt(np.mean(stream**2)) + 1e-9)
    return out


def make_noise(kind: str, seconds: float, rng: np.random.Generator, voices: Sequence[Voice]) -> np.ndarray:
    """One of BACKGROUND_TYPES, normalised to −20 dBFS RMS."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "white_noise":
        x = rng.standard_normal(n)
    elif kind == "pink_noise":
        x = _shaped_noise(rng, n, 1.0)
    elif kind == "brown_noise":
        x = _shaped_noise(rng, n, 2.0)
    elif kind == "mains_hum":
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
        x = x * (1 + 0.1 * np.sin(2 * np.pi * 0.3 * t)) + 0.05 * rng.standard_normal(n)
    elif kind == "fan":
        blade = rng.uniform(12.0, 30.0)
        x = _bandpass(_shaped_noise(rng, n, 1.0), 40.0, 2500.0) * (1 + 0.3 * np.sin(2 * np.pi * blade * t))
    elif kind == "running_tap":
        gurgle = np.abs(_bandpass(rng.standard_normal(n), 2.0, 25.0))
        x = _bandpass(rng.standard_normal(n), 900.0, 5000.0) * (0.3 + gurgle / (gurgle.mean() + 1e-9))
    elif kind == "babble":
        x = _babble(rng, n, voices)
    else:
        raise EdgeKWSError(f"unknown noise type '{kind}' (valid: {', '.join(BACKGROUND_TYPES)})")
    x = np.asarray(x, dtype=np.float64)
    return (x * (0.1 / (np.sqrt(np.mean(x**2)) + 1e-12))).astype(np.float32)


def noise_bank(seed: int, voices: Sequence[Voice], seconds: float = 20.0) -> dict[str, np.ndarray]:
    """The private noise mixed into clips (seed stream 1; `_background_noise_/` uses stream 2)."""
    return {
        kind: make_noise(kind, seconds, np.random.default_rng([seed, 1, k]), voices)
        for k, kind in enumerate(BACKGROUND_TYPES)
    }


def write_background_noise(out: Path, seed: int, voices: Sequence[Voice]) -> None:
    """`_background_noise_/<type>.wav`, one minute each, like GSC's folder (kept if already valid)."""
    folder = out / "_background_noise_"
    folder.mkdir(exist_ok=True)
    for k, kind in enumerate(BACKGROUND_TYPES):
        path = folder / f"{kind}.wav"
        if _valid_wav(path, BACKGROUND_SECONDS * SAMPLE_RATE):
            continue
        x = make_noise(kind, BACKGROUND_SECONDS, np.random.default_rng([seed, 2, k]), voices)
        write_wav(path, x)


# --------------------------------------------------------------------------------------------
# Rendering one clip


def _sox_to_float(path: Path, effects: list[str]) -> np.ndarray:
    """Any WAV -> 16 kHz mono float32 via sox (dither off so output is deterministic)."""
    raw = _run(["sox", "-D", str(path), "-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-", *effects])
    return np.frombuffer(raw, dtype=np.float32).copy()


def _sox_tempo(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed a too-long word up, pitch kept, so that it fits in the second."""
    fmt = ["-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1"]
    raw = _run(["sox", "-D", *fmt, "-", *fmt, "-", "tempo", "-s", f"{factor:.4f}"], stdin=x.astype(np.float32).tobytes())
    return np.frombuffer(raw, dtype=np.float32).copy()


def _tts(plan: ClipPlan, wav: Path) -> None:
    v = plan.voice
    if v.engine == "espeak":
        _run(["espeak-ng", "-v", v.name, "-s", str(plan.rate_wpm), "-p", str(plan.pitch), "-w", str(wav), plan.word])
    elif v.engine == "flite":
        _run(["flite", "-voice", v.name, "-t", plan.word, "-o", str(wav)])
    elif v.engine == "festival":
        _run(["text2wave", "-eval", f"(voice_{v.name})", "-o", str(wav)], stdin=plan.word.encode())
    else:  # pragma: no cover - plans only hold known engines
        raise EdgeKWSError(f"unknown TTS engine '{v.engine}'")


def _trim(x: np.ndarray, floor_db: float = -40.0, pad: int = 320) -> np.ndarray:
    """Cut leading/trailing silence: 10 ms frames quieter than `floor_db` below the loudest frame."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (floor_db / 20))[0]
    if len(loud) == 0:
        return x
    return x[max(0, loud[0] * hop - pad) : min(len(x), (loud[-1] + 1) * hop + pad)]


def _rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room impulse response: direct path + exponentially decaying diffuse tail."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # 2 ms before the first reflection
    return tail / (np.sqrt(np.sum(tail**2)) + 1e-12)


def render_clip(plan: ClipPlan, bank: dict[str, np.ndarray], workdir: Path) -> np.ndarray:
    """TTS -> 16 kHz -> trim -> fit in 0.95 s -> level -> place -> reverb -> noise -> int16."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng([plan.index, 7])  # only for the RIR's noise; plan holds the rest
    wav = workdir / "tts.wav"
    _tts(plan, wav)
    effects = [] if plan.voice.engine == "espeak" else ["tempo", "-s", f"{plan.tempo}", "pitch", str(plan.pitch_cents)]
    x = _trim(_sox_to_float(wav, effects))
    limit = int(0.95 * CLIP_SAMPLES)
    if len(x) > limit:
        x = _trim(_sox_tempo(x, len(x) / (0.9 * CLIP_SAMPLES)))[:limit]
    x = x.astype(np.float64)
    speech_rms = np.sqrt(np.mean(x**2)) + 1e-12
    x *= 10 ** (plan.level_dbfs / 20) / speech_rms
    speech_rms = 10 ** (plan.level_dbfs / 20)
    clip = np.zeros(CLIP_SAMPLES)
    start = int(plan.offset_frac * (CLIP_SAMPLES - len(x)))
    clip[start : start + len(x)] = x
    if plan.reverb_rt60 > 0:
        wet = fftconvolve(clip, _rir(rng, plan.reverb_rt60))[:CLIP_SAMPLES]
        wet *= np.sqrt(np.mean(clip**2)) / (np.sqrt(np.mean(wet**2)) + 1e-12)
        clip = (1 - plan.reverb_wet) * clip + plan.reverb_wet * wet
    if plan.noise_type:
        src = bank[plan.noise_type]
        off = int(plan.noise_offset_frac * (len(src) - CLIP_SAMPLES))
        noise = src[off : off + CLIP_SAMPLES].astype(np.float64)
        noise *= speech_rms / (10 ** (plan.snr_db / 20) * (np.sqrt(np.mean(noise**2)) + 1e-12))
        clip = clip + noise
    peak = np.max(np.abs(clip))
    if peak > 0.98:
        clip *= 0.98 / peak
    return to_pcm16(clip)


# --------------------------------------------------------------------------------------------
# The corpus


def _valid_wav(path: Path, n_samples: int) -> bool:
    try:
        return len(read_wav(path, SAMPLE_RATE)) == n_samples
    except AudioError:
        return False


META_FIELDS = (
    "path", "word", "split", "engine", "voice", "speaker", "rate_wpm", "pitch", "tempo",
    "pitch_cents", "level_dbfs", "offset_frac", "reverb_rt60", "reverb_wet", "noise_type",
    "snr_db", "noise_offset_frac", "sha256",
)


def _meta_row(plan: ClipPlan, sha: str) -> dict[str, object]:
    row = {k: v for k, v in asdict(plan).items() if k in META_FIELDS}
    row.update(engine=plan.voice.engine, voice=plan.voice.name, speaker=plan.voice.speaker, sha256=sha)
    return row


_WORKER: dict[str, object] = {}


def _worker_init(bank: dict[str, np.ndarray], out: str, scratch: str) -> None:
    _WORKER["bank"] = bank
    _WORKER["out"] = Path(out)
    _WORKER["tmp"] = Path(tempfile.mkdtemp(prefix="worker-", dir=scratch))


def _worker_render(plan: ClipPlan) -> dict[str, object]:
    pcm = render_clip(plan, _WORKER["bank"], _WORKER["tmp"])  # type: ignore[arg-type]
    data = wav_bytes(pcm, SAMPLE_RATE)
    dest = _WORKER["out"] / plan.path  # type: ignore[operator]
    dest.parent.mkdir(exist_ok=True)
    write_bytes_atomic(dest, data)
    return _meta_row(plan, hashlib.sha256(data).hexdigest())


def _is_done(out: Path, plan: ClipPlan, row: dict[str, str] | None) -> bool:
    """A clip is kept on resume only if its row matches this plan and its bytes match the row."""
    if row is None:
        return False
    want = {k: str(v) for k, v in _meta_row(plan, row["sha256"]).items()}
    if want != {k: row[k] for k in META_FIELDS}:
        return False
    path = out / plan.path
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == row["sha256"] and _valid_wav(path, CLIP_SAMPLES)


def _read_partial_meta(path: Path) -> dict[str, dict[str, str]]:
    """Rows already appended by an interrupted run; a torn last line is simply dropped."""
    rows: dict[str, dict[str, str]] = {}
    if not path.exists():
        return rows
    # undecodable bytes and malformed rows are dropped (their clips are simply made again)
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        try:
            for row in csv.DictReader(f, fieldnames=META_FIELDS):
                if row.get("path") == "path" or None in row.values() or not re.fullmatch(r"[0-9a-f]{64}", row.get("sha256") or ""):
                    continue
                rows[row["path"]] = row
        except csv.Error:
            pass  # e.g. a NUL byte from a crash: keep the rows read so far
    return rows


def synthesize(
    out: Path,
    n_clips: int = DEFAULT_CLIPS,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthReport:
    """Generate (or complete) a corpus in the Speech Commands v2 layout under `out`."""
    import multiprocessing as mp
    import time

    out = ensure_writable_dir(Path(out))
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise EdgeKWSError(f"--workers must be at least 1 (got {workers})")
    t0 = time.perf_counter()
    voices = available_voices()
    plans = plan_corpus(n_clips, seed, voices)
    write_background_noise(out, seed, voices)

    partial_path = out / "meta.partial.csv"
    done = _read_partial_meta(partial_path)
    final_meta = out / "meta.csv"
    if final_meta.exists():
        done.update(_read_partial_meta(final_meta))
    todo, rows = [], {}
    for p in plans:
        if _is_done(out, p, done.get(p.path)):
            rows[p.path] = done[p.path]
        else:
            todo.append(p)
    kept = len(rows)
    if progress:
        progress(kept, len(plans))
    if todo:
        bank = noise_bank(seed, voices)
        new_file = not partial_path.exists()
        with open(partial_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=META_FIELDS)
            if new_file:
                writer.writeheader()
            ctx = mp.get_context("fork")
            # the TTS engines' scratch WAVs: one folder removed when synthesis ends, however it
            # ends; a killed run's is aged out by the next run (sweep_stale)
            sweep_stale(Path(tempfile.gettempdir()), "edgekws-synth-*")
            scratch = tempfile.mkdtemp(prefix="edgekws-synth-")
            try:
                with ctx.Pool(workers, initializer=_worker_init, initargs=(bank, str(out), scratch)) as pool:
                    for row in pool.imap_unordered(_worker_render, todo, chunksize=4):
                        writer.writerow(row)
                        f.flush()
                        rows[str(row["path"])] = row
                        if progress:
                            progress(len(rows), len(plans))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    # Lists and metadata are derived from the plan, so they are identical for every run.
    ordered = [rows[p.path] for p in sorted(plans, key=lambda p: p.path)]
    sio = io.StringIO()
    w = csv.DictWriter(sio, fieldnames=META_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in ordered:
        w.writerow({k: r[k] for k in META_FIELDS})
    write_text_atomic(final_meta, sio.getvalue())
    for split, name in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        buf = sorted(p.path for p in plans if p.split == split)
        write_text_atomic(out / name, "".join(f"{x}\n" for x in buf))
    per_split = {s: sum(p.split == s for p in plans) for s in SPLIT_SHARES}
    split_of = assign_splits(voices, seed)
    voices_per_split = {s: sum(split_of[v.speaker] == s for v in voices) for s in SPLIT_SHARES}
    write_json_atomic(
        out / "corpus.json",
        {
            "generator": "edgekws.synth",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "clips": n_clips,
            "sample_rate": SAMPLE_RATE,
            "keywords": list(KEYWORDS),
            "aux_words": list(AUX_WORDS),
            "clips_per_split": per_split,
            "voices_per_split": voices_per_split,
            "speaker_split": {s: split_of[s] for s in sorted(split_of)},
            "background_noise": [f"{k}.wav" for k in BACKGROUND_TYPES],
        },
    )
    partial_path.unlink(missing_ok=True)
    return SynthReport(
        out=out,
        planned=len(plans),
        generated=len(todo),
        kept=kept,
        seconds=time.perf_counter() - t0,
        per_split=per_split,
        voices_per_split=voices_per_split,
    )
