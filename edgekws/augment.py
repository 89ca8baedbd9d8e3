"""Training-time augmentation: waveform noise mixing and time shift, SpecAugment-style masking.

All of it runs on whole batches in torch with an explicit `torch.Generator`, so a seeded run is
reproducible and nothing reads global random state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Defaults follow TensorFlow's speech_commands recipe (shift ±100 ms, noise on 80 % of clips
    at up to 0.1 volume) plus two time and two frequency masks (SpecAugment's LD policy, scaled to
    49 × 40 inputs)."""

    shift_ms: float = 100.0
    noise_prob: float = 0.8
    noise_volume: float = 0.1
    time_masks: int = 2
    time_mask_width: int = 8  # frames (of 49)
    freq_masks: int = 2
    freq_mask_width: int = 6  # mel bands (of 40)


class WaveAugment:
    """Shift each clip by a random offset (zero fill) and mix in a random background-noise cut."""

    def __init__(self, noises: Sequence[np.ndarray], cfg: AugmentConfig = AugmentConfig(), sample_rate: int = 16000):
        import torch

        self.cfg = cfg
        self.shift = int(cfg.shift_ms * sample_rate / 1000)
        self.noises = [torch.from_numpy(np.asarray(n, dtype=np.float32)) for n in noises if len(n) > sample_rate]

    def __call__(self, wave, gen):
        import torch

        b, n = wave.shape
        if self.shift:
            shifts = torch.randint(-self.shift, self.shift + 1, (b,), generator=gen)
            idx = torch.arange(n)[None, :] - shifts[:, None]
            valid = (idx >= 0) & (idx < n)
            wave = torch.where(valid, wave.gather(1, idx.clamp(0, n - 1)), torch.zeros(()))
        if self.noises and self.cfg.noise_prob > 0:
            which = torch.randint(len(self.noises), (b,), generator=gen)
            cuts = torch.stack([
                self.noises[int(k)][int(torch.randint(len(self.noises[int(k)]) - n, (1,), generator=gen)):][:n]
                for k in which
            ])
            vol = torch.rand(b, generator=gen) * self.cfg.noise_volume
            vol = vol * (torch.rand(b, generator=gen) < self.cfg.noise_prob)
            wave = (wave + vol[:, None] * cuts).clamp(-1.0, 1.0)
        return wave


def spec_augment(feats, gen, cfg: AugmentConfig = AugmentConfig()):
    """Mask random time and frequency bands of (B, frames, n_mels) features with each clip's mean."""
    import torch

    b, t, f = feats.shape
    fill = feats.mean(dim=(1, 2), keepdim=True)
    mask = torch.zeros(b, t, f, dtype=torch.bool)
    for count, width, axis, size in ((cfg.time_masks, cfg.time_mask_width, 1, t), (cfg.freq_masks, cfg.freq_mask_width, 2, f)):
        pos = torch.arange(size)
        for _ in range(count):
            w = torch.randint(0, width + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - w + 1)).long()
            band = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])
            mask |= band[:, :, None] if axis == 1 else band[:, None, :]
    return torch.where(mask, fill, feats)
