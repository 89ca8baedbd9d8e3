"""WAV reading and writing for 16 kHz mono 16-bit PCM, the Speech Commands format.

Reading policy (documented in the README):
- another sample rate is resampled to the requested one with a polyphase filter (real-world
  folders sometimes hold 8 kHz or 44.1 kHz clips, and refusing them helps nobody);
- stereo, empty, truncated, non-PCM or non-WAV files are refused with an `AudioError` that names
  the file: guessing a channel or padding a cut file would silently corrupt training data.
"""

from __future__ import annotations

import io
import struct
import wave
from math import gcd
from pathlib import Path

import numpy as np

from edgekws.errors import AudioError
from edgekws.fileio import write_bytes_atomic

_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}
MIN_RATE, MAX_RATE = 1000, 384_000  # what real recorders write; outside is a damaged header


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling (scipy's Kaiser-windowed FIR); exact rational ratio, deterministic."""
    if sr_from == sr_to:
        return x
    from scipy.signal import resample_poly

    g = gcd(sr_from, sr_to)
    return resample_poly(x.astype(np.float64), sr_to // g, sr_from // g).astype(np.float32)


def read_wav(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """Read a mono PCM WAV as float32 in [-1, 1), resampled to `sample_rate` when it differs."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, sr, nframes = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            # never trust the header's length for the allocation: read at most what the file holds
            raw = w.readframes(min(nframes, path.stat().st_size // max(1, width * channels)))
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except (wave.Error, EOFError, RuntimeError, ValueError, struct.error, MemoryError) as exc:
        raise AudioError(f"{path}: not a readable PCM WAV file ({str(exc) or type(exc).__name__})") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: is a folder, not a WAV file") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not MIN_RATE <= sr <= MAX_RATE:
        raise AudioError(f"{path}: sample rate {sr} Hz is outside {MIN_RATE}-{MAX_RATE} Hz (a damaged header?)")
    if channels != 1:
        raise AudioError(f"{path}: has {channels} channels; edgekws needs mono audio")
    if width not in _PCM_DTYPES:
        raise AudioError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    if nframes == 0:
        raise AudioError(f"{path}: empty WAV (no samples)")
    if len(raw) < nframes * width:
        raise AudioError(
            f"{path}: truncated WAV (header says {nframes} samples, file holds {len(raw) // width})"
        )
    pcm = np.frombuffer(raw, dtype=_PCM_DTYPES[width])
    if width == 1:
        x = (pcm.astype(np.float32) - 128.0) / 128.0
    else:
        x = pcm.astype(np.float32) / float(2 ** (8 * width - 1))
    return resample(x, sr, sample_rate)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1) to int16 with rounding and clipping (no dither: output must be deterministic)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def wav_bytes(pcm16: np.ndarray, sample_rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.ascontiguousarray(pcm16, dtype="<i2").tobytes())
    return buf.getvalue()


def write_wav(path: Path, x: np.ndarray, sample_rate: int = 16000) -> None:
    """Write float audio (or int16 PCM) as a 16-bit mono WAV, atomically."""
    pcm = x if x.dtype == np.int16 else to_pcm16(x)
    write_bytes_atomic(Path(path), wav_bytes(pcm, sample_rate))
