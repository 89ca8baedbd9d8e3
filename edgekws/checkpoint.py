"""Self-describing supernet checkpoints, loaded safely.

A checkpoint is a dict of plain types plus tensors — family, search space, feature config,
labels, training config, metrics and the supernet's state dict — saved atomically and always
loaded with `torch.load(..., weights_only=True)`, so a malicious pickle is refused without
running any of its code.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.features import FeatureConfig
from edgekws.fileio import atomic_path
from edgekws.spec import SearchSpace

FORMAT = "edgekws.supernet/2"
# Formats this version reads. /1 (the first shipped supernet) predates the sampling record: its
# random subnets shared one width multiplier across stages, so it reads as sampling "uniform".
READABLE_FORMATS = {"edgekws.supernet/1": "uniform", "edgekws.supernet/2": None}
# What the training sampler visited, per policy (`Checkpoint.trained(spec)` answers per spec).
SAMPLING_COVERAGE = {
    "per_stage": "every spec of the search space (widths and depths drawn per stage)",
    "uniform": "specs whose stages share one width multiplier (any depths); mixed widths untrained",
    "fixed": "only the one spec it was trained as",
}


class CheckpointError(EdgeKWSError):
    pass


@dataclass
class Checkpoint:
    family: str
    space: SearchSpace
    features: FeatureConfig
    labels: tuple[str, ...]
    state_dict: dict
    train_config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    # Pinned training-split features (float16) for BN recalibration and int8 calibration, so that
    # evaluation and export need no corpus and never calibrate on test data.
    calibration: object = None
    # The sampling policy training used (see SAMPLING_COVERAGE): which specs it visited.
    sampling: str = "per_stage"

    def trained(self, spec) -> bool:
        """Whether training visited `spec` (a search must only pick specs it did)."""
        self.space.validate(spec)
        if self.sampling == "per_stage":
            return True
        if self.sampling == "uniform":
            return spec.widths in {s.widths for s in self.space.width_multiplier_specs().values()}
        fixed = self.train_config.get("fixed_spec")
        return fixed is not None and tuple(fixed["widths"]) == spec.widths and tuple(fixed["depths"]) == spec.depths

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def calibration_features(self, n: int | None = None):
        """(N, frames, n_mels) float32 numpy array of the calibration set (first n)."""
        import numpy as np

        if self.calibration is None:
            raise CheckpointError("this checkpoint carries no calibration set (train it with edgekws >= 0.1)")
        x = self.calibration.float().numpy()
        if n is not None:
            if n < 1 or n > len(x):
                raise CheckpointError(f"calibration count {n} is outside the checkpoint's calibration set (valid: 1..{len(x)})")
            x = x[:n]
        return np.ascontiguousarray(x, dtype=np.float32)

    def supernet(self):
        """Rebuild the supernet and load the weights (space taken from the checkpoint)."""
        from edgekws.models import get_family

        fam = get_family(self.family)
        if fam.space != self.space:
            from dataclasses import replace

            fam = replace(fam, space=self.space)
        net = fam.supernet(self.num_classes, self.features.shape)
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint weights do not fit family '{self.family}': {first}") from None
        return net.eval()


def save_checkpoint(path: Path, ck: Checkpoint) -> None:
    import torch

    payload = {
        "format": FORMAT,
        "family": ck.family,
        "space": ck.space.to_dict(),
        "features": ck.features.to_dict(),
        "labels": list(ck.labels),
        "train_config": ck.train_config,
        "metrics": ck.metrics,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in ck.state_dict.items()},
        "sampling": {"policy": ck.sampling, "covers": SAMPLING_COVERAGE.get(ck.sampling, "")},
    }
    if ck.calibration is not None:
        payload["calibration"] = torch.as_tensor(ck.calibration).to(torch.float16)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> Checkpoint:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: refused to load (not a plain-weights checkpoint: {reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(exc).strip().splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("edgekws.supernet/"):
        raise CheckpointError(f"{path}: not an edgekws supernet checkpoint (expected format {FORMAT})")
    fmt = payload["format"]
    if fmt not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format '{fmt}' is not readable by this edgekws "
                              f"(reads {', '.join(sorted(READABLE_FORMATS))}); upgrade edgekws")
    try:
        sampling = READABLE_FORMATS[fmt] or payload["sampling"]["policy"]
        if sampling not in SAMPLING_COVERAGE:
            raise CheckpointError(f"{path}: unknown sampling policy '{sampling}'")
        return Checkpoint(
            family=payload["family"],
            space=SearchSpace.from_dict(payload["space"]),
            features=FeatureConfig.from_dict(payload["features"]),
            labels=tuple(payload["labels"]),
            state_dict=payload["state_dict"],
            train_config=payload.get("train_config", {}),
            metrics=payload.get("metrics", {}),
            calibration=payload.get("calibration"),
            sampling=sampling,
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint is missing or has a malformed field ({exc})") from None
