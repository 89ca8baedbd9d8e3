"""WAV reading policy: resample other rates; refuse stereo, empty, truncated and non-WAV files."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from edgekws.audio import read_wav, to_pcm16, write_wav
from edgekws.errors import AudioError


def write_raw(path, data: np.ndarray, rate=16000, channels=1, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def test_roundtrip(tmp_path):
    x = np.linspace(-0.5, 0.5, 16000, dtype=np.float32)
    write_wav(tmp_path / "a.wav", x)
    np.testing.assert_allclose(read_wav(tmp_path / "a.wav"), x, atol=1 / 32768)


def test_other_sample_rate_is_resampled(tmp_path):
    t = np.arange(8000) / 8000
    write_raw(tmp_path / "8k.wav", to_pcm16(0.5 * np.sin(2 * np.pi * 440 * t)), rate=8000)
    y = read_wav(tmp_path / "8k.wav", 16000)
    assert len(y) == 16000
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(y)))] - 440) < 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write_raw(p, np.zeros(3200, np.int16), channels=2), "2 channels"),
        (lambda p: write_raw(p, np.zeros(0, np.int16)), "empty WAV"),
        (lambda p: p.write_bytes(b"ID3\x03 this is an mp3 really" * 10), "not a readable PCM WAV"),
        (lambda p: p.write_bytes(b""), "not a readable PCM WAV"),
        (lambda p: write_raw(p, np.zeros(100, np.uint8), width=3) if False else p.write_bytes(_wav24()), "24-bit"),
    ],
    ids=["stereo", "empty", "mp3", "zero-bytes", "24bit"],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=message) as info:
        read_wav(p)
    assert str(p) in str(info.value)
    assert "\n" not in str(info.value)


def _wav24() -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(16000)
        w.writeframes(b"\x00" * 300)
    return buf.getvalue()


def test_truncated_file(tmp_path):
    p = tmp_path / "cut.wav"
    write_raw(p, np.ones(16000, np.int16))
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(AudioError, match="truncated"):
        read_wav(p)
