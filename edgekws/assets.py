"""The assets shipped inside the package: the default trained supernet and a pinned pack.

`edgekws/assets/` holds
- `dscnn_supernet.pt` — the default `dscnn` supernet (a normal checkpoint);
- `kwt_supernet.pt` — the `kwt` supernet, picked with `--supernet kwt`;
- `pack.npz` — the pinned evaluation/calibration pack: the first N examples of the test split
  in the pinned order (features as float16, targets, keys), and the audio of the first few clips
  as int16 for golden vectors;
- `val_pack.npz` — the same for the *validation* split, no audio: what the search's accuracy
  oracle scores subnets on (choosing a subnet by its test accuracy would make the test accuracy
  reported for the pick optimistic);
- `MADE.json` — how they were made: command, seed, corpus size, training time, metrics.

So `export` and its accuracy gates work on a fresh machine with no corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekws.errors import EdgeKWSError
from edgekws.fileio import atomic_path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "dscnn_supernet.pt"
# one trained supernet per family that ships; what `--supernet FAMILY` names
SHIPPED_SUPERNETS = {"dscnn": DEFAULT_CHECKPOINT, "kwt": ASSETS / "kwt_supernet.pt"}
DEFAULT_PACK = ASSETS / "pack.npz"
VALIDATION_PACK = ASSETS / "val_pack.npz"
PACK_SPLITS = ("testing", "validation")


def shipped_checkpoint(family: str) -> Path:
    """The shipped supernet of `family`; a family that ships none is one line naming those that do."""
    path = SHIPPED_SUPERNETS.get(family)
    if path is None or not path.is_file():
        have = ", ".join(f for f, p in SHIPPED_SUPERNETS.items() if p.is_file())
        raise EdgeKWSError(f"no shipped supernet for family '{family}' (shipped: {have}; "
                           f"give --checkpoint for one you trained)")
    return path


def resolve_checkpoint(checkpoint: Path | None, supernet: str | None) -> Path:
    """What `--checkpoint` / `--supernet` select: a user's file, a shipped family, or the default."""
    if checkpoint is not None and supernet is not None:
        raise EdgeKWSError("give --checkpoint or --supernet, not both")
    if supernet is not None:
        return shipped_checkpoint(supernet)
    return Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT


@dataclass
class Pack:
    """A pinned set of examples: features (N, frames, n_mels) float32, targets, keys; audio for
    the first `len(waves)` of them."""

    features: np.ndarray
    targets: np.ndarray
    keys: list[str]
    labels: tuple[str, ...]
    waves: np.ndarray  # (n_audio, samples) int16

    def __len__(self) -> int:
        return len(self.targets)


def make_pack(data_dir: Path, dest: Path, n: int = 1000, n_audio: int = 24, protocol: str = "12", seed: int = 0,
              cache_dir: Path | None = None, split_name: str = "testing") -> Pack:
    from edgekws.data import SpeechCommands, load_split

    if split_name not in PACK_SPLITS:
        raise EdgeKWSError(f"split '{split_name}' is not one a pack is made from (valid: {', '.join(PACK_SPLITS)})")
    ds = SpeechCommands.open(data_dir, protocol, seed)
    split = load_split(ds, split_name, cache_dir=cache_dir)
    if n > len(split.targets):
        raise EdgeKWSError(f"the {split_name} split has {len(split.targets)} examples, fewer than {n}")
    pack = Pack(np.asarray(split.features[:n], dtype=np.float32), np.asarray(split.targets[:n]), split.keys[:n],
                tuple(ds.protocol.labels), np.asarray(split.waves[:n_audio]))
    with atomic_path(Path(dest)) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, features=pack.features.astype(np.float16), targets=pack.targets.astype(np.int16),
                                keys=np.array(pack.keys), labels=np.array(pack.labels), waves=pack.waves)
    return pack


def load_pack(path: Path = DEFAULT_PACK) -> Pack:
    from edgekws.fileio import first_line

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            pack = Pack(z["features"].astype(np.float32), z["targets"].astype(np.int64), [str(k) for k in z["keys"]],
                        tuple(str(x) for x in z["labels"]), z["waves"])
    except FileNotFoundError:
        raise EdgeKWSError(f"pack '{path}' does not exist") from None
    except IsADirectoryError:
        raise EdgeKWSError(f"pack '{path}' is a folder, not a file") from None
    except Exception as exc:  # numpy raises zip, zlib, header-parser (SyntaxError, TokenError)... errors
        raise EdgeKWSError(f"{path}: not a readable evaluation pack ({first_line(exc)})") from None
    problem = pack_problem(pack)
    if problem:
        raise EdgeKWSError(f"{path}: not a usable evaluation pack ({problem})")
    return pack


def pack_problem(pack: Pack) -> str | None:
    """Why arrays read from a pack cannot be used for gates and calibration (None if they can)."""
    f, t = pack.features, pack.targets
    if f.ndim != 3 or len(f) == 0:
        return f"features have shape {f.shape}, expected (N, frames, mels) with N > 0"
    if t.shape != (len(f),) or len(pack.keys) != len(f):
        return f"{len(f)} feature rows but targets {t.shape} and {len(pack.keys)} keys"
    if len(pack.labels) < 2 or t.min() < 0 or t.max() >= len(pack.labels):
        return f"targets outside the {len(pack.labels)} labels"
    if not np.isfinite(f).all():
        return "features hold NaN or infinite values"
    if pack.waves.ndim != 2 or len(pack.waves) > len(f):
        return f"waves have shape {pack.waves.shape}, expected (n ≤ {len(f)}, samples)"
    return None
