"""Per-clip input normalisation's choices and costs, torch-free (the registry and `edgekws info`
read them without importing torch; the layer is `edgekws.models.layers.InputNorm`).

- `"none"`: the input as it is (every checkpoint made before this option).
- `"band_mean"`: each mel band minus its mean over the clip (cepstral mean normalisation in the
  log-mel domain): removes any fixed per-band offset, and with it the clip's level — so silence
  and quiet noise lose the loudness that told them from speech.
- `"spectral_shape"`: each band minus (its mean over the clip − the mean over all bands), i.e.
  the clip's average spectral shape is removed and its overall level kept.
"""

from __future__ import annotations

from edgekws import costs

INPUT_NORMS = ("none", "band_mean", "spectral_shape")


def check_input_norm(mode: str) -> None:
    from edgekws.errors import EdgeKWSError

    if mode not in INPUT_NORMS:
        raise EdgeKWSError(f"input_norm must be one of {', '.join(INPUT_NORMS)} (got {mode!r})")


def input_norm_ops(mode: str, input_shape: tuple[int, int]) -> list[costs.Op]:
    """The deployed graph's ops for `mode`: a mean over time per band (and one over the bands),
    then a subtraction; no parameters."""
    if mode == "none":
        return []
    frames, mels = input_shape
    ops = [costs.Op("mean", frames * mels, mels)]
    if mode == "spectral_shape":
        ops += [costs.Op("mean", mels, 1), costs.elementwise("sub", mels)]
    return ops + [costs.elementwise("sub", frames * mels)]
