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


@dataclass(frozen=True)
class ChannelConfig:
    """Speaker and channel variability that one TTS engine does not have, applied per clip.

    - `speed`: resample the waveform by a factor in [1 − speed, 1 + speed] (tempo and pitch move
      together, as Kaldi's speed perturbation);
    - `vtlp`: vocal-tract-length perturbation — the frequency axis of the power spectrum warped
      by a factor in [1 − vtlp, 1 + vtlp] (Jaitly & Hinton 2013), which moves formants the way
      a longer or shorter vocal tract does;
    - `band_prob`: a random band limit (low-pass 3.4–7.6 kHz, high-pass 0–300 Hz, like
      telephone/VoIP codecs and cheap microphones) on that share of clips;
    - `tilt_db`: a random spectral tilt of up to ± this many dB between 0 and 8 kHz (microphone
      and room colouration).
    """

    speed: float = 0.1
    vtlp: float = 0.1
    band_prob: float = 0.3
    tilt_db: float = 6.0


def speed_perturb(wave, gen, max_dev: float):
    """Per-clip resampling by a factor in [1 − max_dev, 1 + max_dev], linear interpolation, length kept
    (a faster clip is zero-padded at the end, a slower one cut)."""
    import torch

    if max_dev <= 0:
        return wave
    b, n = wave.shape
    rate = 1.0 + (torch.rand(b, generator=gen) * 2 - 1) * max_dev  # >1 = faster, higher
    pos = torch.arange(n, dtype=torch.float32)[None, :] * rate[:, None]
    lo = pos.floor().long()
    frac = pos - lo
    valid = lo < n - 1
    lo = lo.clamp(max=n - 2)
    out = wave.gather(1, lo) * (1 - frac) + wave.gather(1, lo + 1) * frac
    return torch.where(valid, out, torch.zeros(()))


def channel_augment(power, gen, cfg: ChannelConfig = ChannelConfig(), sample_rate: int = 16000):
    """VTLP warp, band limit and tilt on a (B, frames, bins) power spectrogram."""
    import torch

    b, _, bins = power.shape
    dtype = power.dtype
    if cfg.vtlp > 0:
        alpha = 1.0 + (torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * cfg.vtlp
        src = (torch.arange(bins, dtype=torch.float64)[None, :] / alpha[:, None]).clamp(max=bins - 1)
        lo = src.floor().long().clamp(max=bins - 2)
        frac = (src - lo).to(dtype)[:, None, :]
        idx = lo[:, None, :].expand(-1, power.shape[1], -1)
        power = power.gather(2, idx) * (1 - frac) + power.gather(2, idx + 1) * frac
    freqs = torch.linspace(0, sample_rate / 2, bins, dtype=torch.float64)
    gain = torch.zeros(b, bins, dtype=torch.float64)
    if cfg.tilt_db > 0:
        tilt = (torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * cfg.tilt_db
        gain += tilt[:, None] * (freqs[None, :] / (sample_rate / 2))
    if cfg.band_prob > 0:
        on = torch.rand(b, generator=gen) < cfg.band_prob
        low_cut = 3400 + torch.rand(b, generator=gen, dtype=torch.float64) * 4200
        high_cut = torch.rand(b, generator=gen, dtype=torch.float64) * 300
        # 4th-order-like roll-offs in dB: 24 dB per octave outside the band
        above = 24 * torch.log2(torch.clamp(freqs[None, :] / low_cut[:, None], min=1.0))
        below = 24 * torch.log2(torch.clamp(high_cut[:, None] / freqs[None, :].clamp(min=1.0), min=1.0))
        gain -= torch.where(on[:, None], above + below, torch.zeros(()))
    return power * (10.0 ** (gain / 10.0)).to(dtype)[:, None, :]
