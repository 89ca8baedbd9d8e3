"""Augmentation is seeded, bounded and does what it says."""

from __future__ import annotations

import numpy as np
import torch

from edgekws.augment import AugmentConfig, WaveAugment, spec_augment


def test_wave_augment_is_seeded_and_bounded():
    noise = [np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1]
    aug = WaveAugment(noise, AugmentConfig(noise_prob=1.0))
    x = torch.zeros(8, 16000)
    x[:, 8000:8100] = 0.9
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 1.0
    # the impulse moved by at most 100 ms
    peaks = (a.abs() > 0.5).float().argmax(dim=1)
    assert ((peaks - 8000).abs() <= 1600).all()


def test_shift_only_keeps_energy_shape():
    aug = WaveAugment([], AugmentConfig(noise_prob=0.0))
    x = torch.zeros(4, 16000)
    x[:, 5000] = 1.0
    y = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(y.sum(dim=1), torch.ones(4))


def test_spec_augment_masks_bands():
    feats = torch.arange(2 * 49 * 40, dtype=torch.float32).reshape(2, 49, 40)
    cfg = AugmentConfig(time_masks=1, time_mask_width=8, freq_masks=1, freq_mask_width=6)
    out = spec_augment(feats, torch.Generator().manual_seed(0), cfg)
    changed = out != feats
    assert changed.any()
    assert changed.float().mean() < 0.5
    # masked cells take the clip's mean value
    fill = feats.mean(dim=(1, 2))
    assert torch.all(out[0][changed[0]] == fill[0])


def test_speed_perturbation_moves_a_tone_and_is_seeded():
    from edgekws.augment import speed_perturb

    t = torch.arange(16000, dtype=torch.float32) / 16000
    x = torch.sin(2 * np.pi * 1000 * t).repeat(16, 1)
    a = speed_perturb(x, torch.Generator().manual_seed(3), 0.1)
    assert torch.equal(a, speed_perturb(x, torch.Generator().manual_seed(3), 0.1))
    peak = torch.fft.rfft(a[:, :8000]).abs().argmax(dim=1).float() * 2  # Hz (8000-sample window)
    assert ((peak >= 890) & (peak <= 1110)).all() and peak.std() > 5  # moved, within ±10 %
    assert torch.equal(speed_perturb(x, torch.Generator(), 0.0), x)


def test_channel_augment_identity_and_band_limit():
    from edgekws.augment import ChannelConfig, channel_augment
    from edgekws.features import FeatureConfig, LogMel

    fe = LogMel(FeatureConfig(), dtype=torch.float32)
    x = torch.randn(32, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    power = fe.power(x)
    same = channel_augment(power, torch.Generator().manual_seed(0), ChannelConfig(0, 0, 0, 0))
    assert torch.equal(fe.log_mel(same), fe(x))  # the split frontend is the frontend
    band = channel_augment(power, torch.Generator().manual_seed(0), ChannelConfig(0, 0, 1.0, 0))
    top = slice(int(7600 / 8000 * 512), 513)  # above every low-pass cut-off: attenuated
    assert (band[:, :, top] < power[:, :, top] * 0.9).all()
    warped = channel_augment(power, torch.Generator().manual_seed(1), ChannelConfig(0, 0.1, 0, 0))
    assert torch.isfinite(warped).all() and not torch.allclose(warped, power)
