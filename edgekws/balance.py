"""Engine-balanced epochs: how often a training epoch shows each TTS engine's clips.

Why: the default corpus's training split (protocol 12) is 68 % espeak-ng — 10,370 of its 15,199
spoken clips, from formant-synthesised voices — against 3,241 flite and 1,588 festival clips from 8
voices built on recorded speech; with flite held out (`edgekws loeo`) it is 87 %. A model that hears
mostly one engine learns that engine's rendering of the words; `edgekws loeo` measures what that
costs on an engine it never heard, and the unheard *speaker* is where it costs most (README,
Stage 3). `--engine-balance P` changes only
the epoch's order: engine `g` with `n_g` clips is drawn `∝ n_g^(1 − P)` times, so P = 0 is the
corpus as it is (and bit-identical to the plain permutation), P = 1 an equal share per engine,
0.5 in between. The spoken clips keep their share of the epoch in total and the silence cuts
(no engine) keep theirs, so the class balance the protocol sets is unchanged.

An engine drawn more often than it has clips is cycled through whole permutations (every clip
before any repeats); one drawn less often is a random subset, different each epoch. The epoch
keeps its length, so a step count, the schedule and `--resume` mean what they meant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekws.data import SILENCE, clip_column
from edgekws.errors import DataError

NO_ENGINE = "(none)"  # silence cuts: made from the background recordings, not by an engine


def read_engines(data_dir: Path) -> dict[str, str]:
    """clip path → engine, from the corpus's `meta.csv`, read once and before the minutes of
    decoding: a corpus without one (or with a broken one) is a one-line error up front."""
    if not (Path(data_dir) / "meta.csv").is_file():
        raise DataError(f"--engine-balance needs each clip's engine, from the meta.csv that `edgekws data synth` "
                        f"writes; '{data_dir}' has none")
    try:
        return clip_column(Path(data_dir), "engine")
    except DataError as exc:
        raise DataError(f"--engine-balance needs each clip's engine: {exc}") from None


def example_engines(engines: dict[str, str], keys: list[str], data_dir: Path) -> np.ndarray:
    """The engine of each training example (`engines` from `read_engines(data_dir)`); silence
    cuts get `NO_ENGINE`. A clip that meta.csv does not list is an error: its share could not be kept."""
    out, missing = [], []
    for k in keys:
        if k.startswith(SILENCE + "/"):
            out.append(NO_ENGINE)
        elif k in engines:
            out.append(engines[k])
        else:
            missing.append(k)
    if missing:
        raise DataError(f"--engine-balance: {len(missing)} training clips are not in {Path(data_dir) / 'meta.csv'} "
                        f"(first: '{missing[0]}')")
    return np.array(out)


def epoch_shares(groups: np.ndarray, power: float) -> dict[str, int]:
    """How many draws of an epoch of `len(groups)` each group gets (they sum to `len(groups)`)."""
    names, counts = np.unique(groups, return_counts=True)
    natural = dict(zip(names.tolist(), counts.tolist()))
    engines = [g for g in natural if g != NO_ENGINE]
    total = sum(natural[g] for g in engines)
    raw = np.array([natural[g] ** (1.0 - power) for g in engines], dtype=np.float64)
    ideal = total * raw / raw.sum()
    share = np.floor(ideal).astype(int)
    for i in np.argsort(-(ideal - share), kind="stable")[: total - int(share.sum())]:  # largest remainders
        share[i] += 1
    out = {g: int(s) for g, s in zip(engines, share)}
    if NO_ENGINE in natural:
        out[NO_ENGINE] = natural[NO_ENGINE]
    return out


def epoch_order(n: int, groups: np.ndarray | None, power: float, rng: np.random.Generator) -> np.ndarray:
    """An epoch's order of `n` examples: the plain `rng.permutation(n)` when `power` is 0, else
    each group's `epoch_shares` draws, shuffled together."""
    if power == 0 or groups is None:
        return rng.permutation(n)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} examples")
    parts = []
    for g, k in sorted(epoch_shares(groups, power).items()):
        members = np.flatnonzero(groups == g)
        whole, rest = divmod(k, len(members))
        parts += [rng.permutation(members) for _ in range(whole)]
        parts.append(rng.permutation(members)[:rest])
    return rng.permutation(np.concatenate(parts))
