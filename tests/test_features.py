"""The log-mel frontend: numpy reference vs torch twin on real clips, and its config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekws.audio import read_wav
from edgekws.errors import EdgeKWSError
from edgekws.features import FeatureConfig, LogMel, logmel_numpy, mel_filterbank


@pytest.fixture(scope="module")
def clips(tiny_corpus) -> np.ndarray:
    paths = sorted(tiny_corpus.glob("*/*_nohash_*.wav"))[:64]
    return np.stack([read_wav(p) for p in paths])


def test_numpy_and_torch_agree_on_real_clips(clips):
    cfg = FeatureConfig()
    ref = logmel_numpy(clips, cfg)
    assert ref.shape == (len(clips), 49, 40)
    twin = LogMel(cfg)(torch.from_numpy(clips)).numpy()
    assert np.abs(ref - twin).max() <= 1e-4
    # the float32 training path stays close too (measured max 3.2e-4 on the corpus)
    fast = LogMel(cfg, dtype=torch.float32)(torch.from_numpy(clips)).numpy()
    assert np.abs(ref - fast).max() <= 2e-3


def test_single_clip_and_padding():
    cfg = FeatureConfig()
    rng = np.random.default_rng(0)
    short = rng.uniform(-0.5, 0.5, 12000).astype(np.float32)
    padded = np.concatenate([short, np.zeros(4000, np.float32)])
    np.testing.assert_array_equal(logmel_numpy(short, cfg), logmel_numpy(padded, cfg))
    silence = logmel_numpy(np.zeros(16000, np.float32), cfg)
    np.testing.assert_allclose(silence, np.log(cfg.log_offset), rtol=1e-6)


def test_a_tone_lands_in_the_right_mel_band():
    cfg = FeatureConfig()
    t = np.arange(16000) / 16000
    feats = logmel_numpy(0.5 * np.sin(2 * np.pi * 1000 * t), cfg)
    band = int(np.argmax(feats.mean(axis=0)))
    fb = mel_filterbank(cfg)
    centre = np.argmax(fb[band]) * cfg.sample_rate / cfg.n_fft
    assert abs(centre - 1000) < 150


def test_config_roundtrip_and_validation():
    cfg = FeatureConfig(n_mels=32)
    d = json.loads(cfg.to_json())
    assert d["frames"] == 49
    assert FeatureConfig.from_dict(d) == cfg
    with pytest.raises(EdgeKWSError):
        FeatureConfig(f_max=9000.0)
    with pytest.raises(EdgeKWSError):
        FeatureConfig(window_samples=2048)


def test_filterbank_covers_the_band():
    fb = mel_filterbank(FeatureConfig())
    assert fb.shape == (40, 513)
    assert (fb.max(axis=1) > 0.5).all()  # no empty filter
