"""Self-describing supernet checkpoints, loaded safely.

A checkpoint is a dict of plain types plus tensors — family, search space, feature config,
labels, training config, metrics and the supernet's state dict — saved atomically and always
loaded with `torch.load(..., weights_only=True)`, so a malicious pickle is refused without
running any of its code.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.features import FeatureConfig
from edgekws.fileio import atomic_path, first_line
from edgekws.spec import SearchSpace, SubnetSpec

FORMAT = "edgekws.supernet/4"
# Formats this version reads. /1 (the first shipped supernet) predates the sampling record: its
# random subnets shared one width multiplier across stages, so it reads as sampling "uniform".
# /3 adds the family's architecture arguments (`arch`); /1 and /2 take them from the registry.
# /4 names channel counts `channels` (space: `channel_names`, `channel_choices`; a fixed spec:
# `channels`) where /1–/3 said `widths`: "width" is only ever a multiplier now. An older edgekws
# would misread those keys, hence the new version; /1–/3 read as before.
READABLE_FORMATS = {"edgekws.supernet/1": "uniform", "edgekws.supernet/2": None, "edgekws.supernet/3": None,
                    "edgekws.supernet/4": None}
# What the training sampler visited, per policy (`Checkpoint.trained(spec)` answers per spec).
SAMPLING_COVERAGE = {
    "per_stage": "every spec of the search space (channels and depths drawn per stage)",
    "uniform": "specs whose stages share one width multiplier (any depths); mixed channel counts untrained",
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
    # The family's fixed architecture arguments (kernel sizes, strides, biases, dropout...: the
    # family's `arch` dataclass as a dict, like nanoGPT's `model_args`), so a checkpoint rebuilds
    # the model it was trained as even if the registry's defaults change. None: the registry's.
    arch: dict | None = None

    @property
    def input_norm(self) -> str:
        """The model's per-clip input normalisation (`edgekws.models.input_norm`); "none" for
        checkpoints made before the option."""
        return (self.arch or {}).get("input_norm", "none")

    def family_def(self):
        """The registered family with this checkpoint's search space and architecture arguments."""
        from dataclasses import replace

        from edgekws.models import get_family

        fam = get_family(self.family)
        if fam.space != self.space:
            fam = replace(fam, space=self.space)
        try:
            return fam.with_arch(self.arch, whose="checkpoint")
        except EdgeKWSError as exc:
            raise CheckpointError(str(exc)) from None

    def trained(self, spec) -> bool:
        """Whether training visited `spec` (a search must only pick specs it did)."""
        self.space.validate(spec)
        if self.sampling == "per_stage":
            return True
        if self.sampling == "uniform":
            return spec.channels in {s.channels for s in self.space.width_multiplier_specs().values()}
        return self.only_spec == spec

    @property
    def only_spec(self) -> SubnetSpec | None:
        """The one spec a one-spec checkpoint holds (a twin, or a subnet fine-tuned by
        `edgekws finetune`); None for a supernet."""
        fixed = self.train_config.get("fixed_spec")
        return SubnetSpec.from_dict(fixed) if self.sampling == "fixed" and fixed else None

    def pick(self, spec: SubnetSpec | None = None, width: float | None = None, depth: int | None = None) -> SubnetSpec:
        """The spec that `--spec` / `--width` / `--depth` ask for: that spec, else the uniform
        `width` (1.0 by default) at `depth`. A one-spec checkpoint gives its own spec when none is
        asked and refuses any other: its other "subnets" are weights no step ever trained alone."""
        only = self.only_spec
        if spec is None and width is None and depth is None and only is not None:
            return only
        if spec is None:
            spec = self.space.uniform(1.0 if width is None else width, depth)
        elif spec.family != self.family:
            raise CheckpointError(f"spec is for family '{spec.family}' but the checkpoint is '{self.family}'")
        self.space.validate(spec)
        if only is not None and spec != only:
            raise CheckpointError(f"this checkpoint holds one subnet, {only.name}, not {spec.name} (give no --width or "
                                  f"--spec to use it)")
        return spec

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
        fam = self.family_def()
        try:
            net = fam.supernet(self.num_classes, self.features.shape)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot build family '{self.family}' from the checkpoint's architecture "
                                  f"arguments: {first_line(exc)}") from None
        try:
            net.load_state_dict(self.state_dict)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint weights do not fit family '{self.family}': {first_line(exc)}") from None
        return net.eval()


def arch_dict(arch) -> dict:
    """A family's architecture dataclass as a checkpoint's `arch` table (tuples as lists)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(arch).items()}


def _registry_arch(family: str) -> dict:
    from edgekws.models import get_family

    return arch_dict(get_family(family).arch)


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
        "arch": ck.arch if ck.arch is not None else _registry_arch(ck.family),
    }
    if ck.calibration is not None:
        payload["calibration"] = torch.as_tensor(ck.calibration).to(torch.float16)
    save_torch(payload, Path(path), "checkpoint")


def save_torch(obj, path: Path, what: str) -> None:
    """`torch.save` to a temp path renamed into place; a full disk or an unwritable folder is a
    one-line error (torch reports both as a RuntimeError from its zip writer) and leaves the
    previous file as it was."""
    import errno

    import torch

    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (RuntimeError, OSError) as exc:  # atomic_path already turned disk-level OSErrors into one line
        reason = os.strerror(exc.errno) if getattr(exc, "errno", None) else first_line(exc)
        try:
            free = shutil.disk_usage(Path(path).parent).free
        except OSError:
            free = None
        if getattr(exc, "errno", None) == errno.ENOSPC or (free is not None and free < (1 << 20)):
            reason = f"no space left on device ({free if free is not None else 0:,} bytes free)"
        raise CheckpointError(f"cannot write {what} '{path}': {reason}") from None


def load_checkpoint(path: Path) -> Checkpoint:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load (not a plain-weights checkpoint: {first_line(exc)})") from None
    except Exception as exc:  # a damaged file makes torch.load raise almost any type (zip, EOF, TypeError in
        # the unpickler...): each means "unreadable", as for the training .state
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("edgekws.supernet/"):
        raise CheckpointError(f"{path}: not an edgekws supernet checkpoint (expected format {FORMAT})")
    fmt = payload["format"]
    if fmt not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format '{fmt}' is not readable by this edgekws "
                              f"(reads {', '.join(sorted(READABLE_FORMATS))}); upgrade edgekws")
    try:
        record = payload.get("sampling")
        if READABLE_FORMATS[fmt] is None and not isinstance(record, dict):
            raise CheckpointError(f"{path}: the sampling record must be a table, not {type(record).__name__}")
        sampling = READABLE_FORMATS[fmt] or record["policy"]
        if not isinstance(sampling, str) or sampling not in SAMPLING_COVERAGE:
            raise CheckpointError(f"{path}: unknown sampling policy {sampling!r}")
        ck = Checkpoint(
            family=payload["family"],
            space=SearchSpace.from_dict(payload["space"]),
            features=FeatureConfig.from_dict(payload["features"]),
            labels=tuple(payload["labels"]),
            state_dict=payload["state_dict"],
            train_config=payload.get("train_config", {}),
            metrics=payload.get("metrics", {}),
            calibration=payload.get("calibration"),
            sampling=sampling,
            arch=payload.get("arch"),
        )
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, EdgeKWSError) as exc:
        raise CheckpointError(f"{path}: checkpoint is missing or has a malformed field ({first_line(exc)})") from None
    _check_contents(path, ck)
    return ck


def _check_contents(path: Path, ck: Checkpoint) -> None:
    """Types, shapes and finiteness of what a checkpoint carries, checked when it is loaded: a
    NaN weight or a calibration set of the wrong shape would otherwise fail deep inside ONNX
    Runtime or the TFLite converter, far from the file that caused it."""
    import torch

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}")

    if not isinstance(ck.family, str) or ck.space.family != ck.family:
        raise bad(f"family {ck.family!r} does not match its search space's ({ck.space.family!r})")
    if len(ck.labels) < 2 or not all(isinstance(x, str) and x for x in ck.labels):
        raise bad("labels must be two or more non-empty strings")
    if not isinstance(ck.train_config, dict) or not isinstance(ck.metrics, dict):
        raise bad("train_config and metrics must be tables")
    if ck.arch is not None and (not isinstance(ck.arch, dict) or not all(isinstance(k, str) for k in ck.arch)):
        raise bad("architecture arguments must be a table")
    if not isinstance(ck.state_dict, dict) or not ck.state_dict:
        raise bad("no weights (state_dict is empty or not a table)")
    for k, v in ck.state_dict.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise bad(f"weight {k!r} is not a tensor")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise bad(f"weight '{k}' holds NaN or infinite values")
    if ck.calibration is not None:
        c = ck.calibration
        if not isinstance(c, torch.Tensor) or c.ndim != 3 or tuple(c.shape[1:]) != tuple(ck.features.shape) or len(c) == 0:
            shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise bad(f"calibration set has shape {shape}, expected (N, {', '.join(map(str, ck.features.shape))})")
        if not c.is_floating_point() or not bool(torch.isfinite(c.float()).all()):
            raise bad("calibration set holds NaN, infinite or non-float values")
