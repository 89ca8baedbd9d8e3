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
