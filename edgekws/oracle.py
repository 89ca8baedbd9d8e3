"""Accuracy of any subnet of a supernet, as the search needs it: extracted, BatchNorm
recalibrated (as it will be deployed), scored on a pinned *validation* pack — never the test pack,
so the test accuracy reported for a pick stays an unbiased estimate — and cached on disk by
(checkpoint sha256, pack sha256, spec), so a second search, a resumed release or another tier
asks the supernet nothing it was asked before.

The cache is one small JSON file per (checkpoint, pack) pair, replaced by rename: a crash loses at
most the answers since the last `flush()`, never the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.spec import SubnetSpec

CACHE_FORMAT = "edgekws.oracle/1"


class AccuracyOracle:
    def __init__(self, checkpoint: Path, pack: Path | None = None, cache_dir: Path | None = None,
                 calibration_examples: int | None = None):
        from edgekws.assets import VALIDATION_PACK, load_pack
        from edgekws.checkpoint import load_checkpoint
        from edgekws.data import default_cache_dir
        from edgekws.fileio import sha256_file

        self.checkpoint_path = Path(checkpoint)
        self.pack_path = Path(pack) if pack is not None else VALIDATION_PACK
        self.ck = load_checkpoint(self.checkpoint_path)
        self.pack = load_pack(self.pack_path)
        if tuple(self.pack.labels) != tuple(self.ck.labels):
            raise EdgeKWSError(f"validation pack '{self.pack_path}' has labels {list(self.pack.labels)}, "
                               f"the checkpoint {list(self.ck.labels)}")
        want = tuple(self.ck.features.shape)
        if tuple(self.pack.features.shape[1:]) != want:
            raise EdgeKWSError(f"validation pack '{self.pack_path}' has features of shape "
                               f"{tuple(self.pack.features.shape[1:])}, the checkpoint's frontend makes {want}")
        self.checkpoint_sha256 = sha256_file(self.checkpoint_path)
        self.pack_sha256 = sha256_file(self.pack_path)
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "oracle"
        self.cache_path = folder / f"{self.checkpoint_sha256[:16]}-{self.pack_sha256[:16]}.json"
        self._calibration = (self.ck.calibration_features(calibration_examples)
                             if self.ck.calibration is not None else None)
        self._model = None
        self._scores: dict[str, float] = self._read_cache()
        self._dirty = 0
        self.evaluated = 0  # supernet evaluations this session (cache misses)

    @property
    def source(self) -> str:
        bn = "BN recalibrated per subnet" if self._calibration is not None else "BN as stored"
        return f"{len(self.pack)} validation examples ({self.pack_path.name}, sha256 {self.pack_sha256[:12]}), {bn}"

    def _read_cache(self) -> dict[str, float]:
        """The cached scores, or nothing when the file is absent or not ours (a damaged cache is
        only a slower run: it is rebuilt, and says so)."""
        if not self.cache_path.exists():
            return {}
        try:
            doc = json.loads(self.cache_path.read_text(encoding="utf-8"))
            ok = (isinstance(doc, dict) and doc.get("format") == CACHE_FORMAT
                  and doc.get("checkpoint_sha256") == self.checkpoint_sha256 and doc.get("pack_sha256") == self.pack_sha256
                  and isinstance(doc.get("accuracy"), dict))
            if ok and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in doc["accuracy"].values()):
                return {str(k): float(v) for k, v in doc["accuracy"].items()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            pass
        print(f"note: accuracy cache '{self.cache_path}' is not readable; it will be rebuilt")
        return {}

    def flush(self) -> None:
        from edgekws.fileio import ensure_writable_dir, write_bytes_atomic

        if not self._dirty:
            return
        ensure_writable_dir(self.cache_path.parent)
        doc = {"format": CACHE_FORMAT, "checkpoint": str(self.checkpoint_path), "checkpoint_sha256": self.checkpoint_sha256,
               "pack": str(self.pack_path), "pack_sha256": self.pack_sha256, "accuracy": dict(sorted(self._scores.items()))}
        write_bytes_atomic(self.cache_path, (json.dumps(doc, indent=1) + "\n").encode())
        self._dirty = 0

    def cached(self, spec: SubnetSpec) -> float | None:
        return self._scores.get(spec.name)

    def accuracy(self, spec: SubnetSpec) -> float:
        """Top-1 accuracy of `spec` on the validation pack (0..1)."""
        import torch

        from edgekws.train import evaluate_spec

        self.ck.space.validate(spec)
        hit = self._scores.get(spec.name)
        if hit is not None:
            return hit
        if self._model is None:
            from edgekws.alloc import keep_freed_memory

            keep_freed_memory()  # a search scores hundreds of subnets: see edgekws.alloc
            self._model = self.ck.supernet()
        with torch.no_grad():
            acc, _ = evaluate_spec(self._model, spec, self.pack, self._calibration)
        self._scores[spec.name] = round(acc, 6)
        self.evaluated += 1
        self._dirty += 1
        if self._dirty >= 20:
            self.flush()
        return self._scores[spec.name]
