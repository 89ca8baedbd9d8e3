"""Latency (and memory) of any subnet, predicted from per-layer features and fitted on rows
measured on *your* board (bench rows) or counted under emulation (instruction counts).

Why a model and not a lookup table: the search visits thousands of specs and a board can measure
a few dozen; OFA's latency tables could not be rebuilt by its users for their own boards, while
`edgekws bench` + `edgekws costmodel fit` can, from any suite's rows.

Features (from the torch-free cost table, `costs.py`): MACs per layer type (dense convolution,
depthwise convolution, linear, attention matmuls), the number of compute kernels (per-kernel
dispatch overhead dominates a 50 µs model), and the elements those kernels write (memory traffic).
Dense convolutions are split into pointwise (1×1) and the rest (in DS-CNN: the 1-channel stem):
with one "convolution MACs" feature the int8 instruction-count model missed by 39 % MAPE on
held-out subnets, with the split by 0.5 % (leave-one-out, 12 subnets, cortex-a72).
The fit is non-negative least squares on *relative* error (each row weighted by 1/y, the error
that MAPE measures), so a 30 µs model counts as much as a 3 ms one; every coefficient is a cost
(≥ 0), so a prediction never goes below the fixed overhead. The error reported is on held-out
*subnets* (grouped k-fold: a spec's rows are never on both sides).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekws.errors import EdgeKWSError
from edgekws.spec import SubnetSpec

FORMAT = "edgekws.costmodel/1"
FEATURES = ("const", "conv2d_mmacs", "pwconv2d_mmacs", "dwconv2d_mmacs", "linear_mmacs", "attention_mmacs", "kernels",
            "mega_elems")
COMPUTE_KINDS = {"conv2d", "pwconv2d", "dwconv2d", "linear", "attention", "avgpool", "layernorm"}


def spec_features(spec: SubnetSpec, num_classes: int = 12, family=None) -> np.ndarray:
    """The feature vector of one spec (order: FEATURES)."""
    from edgekws.accounting import DEFAULT_INPUT
    from edgekws.models import get_family

    fam = family or get_family(spec.family)
    if fam.ops is None:
        raise EdgeKWSError(f"family '{spec.family}' has no cost table, so no latency model")
    fam.space.validate(spec)
    f = dict.fromkeys(FEATURES, 0.0)
    f["const"] = 1.0
    for op in fam.ops(spec, fam.arch, num_classes, fam.input_shape or DEFAULT_INPUT):
        key = f"{op.kind}_mmacs"
        if key in f:
            f[key] += op.macs / 1e6
        if op.kind in COMPUTE_KINDS and (op.macs or op.out_elems):
            f["kernels"] += 1
            f["mega_elems"] += op.out_elems / 1e6
    return np.array([f[k] for k in FEATURES])


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    w = 1.0 / y
    coef, _ = nnls(x * w[:, None], y * w)
    return coef


def errors(pred: np.ndarray, y: np.ndarray) -> dict:
    ape = np.abs(pred - y) / y * 100
    return {"mape_pct": round(float(ape.mean()), 2), "p90_ape_pct": round(float(np.percentile(ape, 90)), 2),
            "max_ape_pct": round(float(ape.max()), 2), "within_10pct": round(float((ape <= 10).mean()), 3), "n": int(len(y))}


@dataclass
class CostModel:
    """One quantity (e.g. `latency_ms`, `instructions`, `ram_kb`) for one group of rows (device,
    runtime, precision, threads)."""

    quantity: str
    group: dict
    coef: list[float]
    rows: int
    specs: int
    holdout: dict = field(default_factory=dict)  # errors on held-out subnets
    features: tuple[str, ...] = FEATURES

    def predict(self, spec: SubnetSpec, num_classes: int = 12, family=None) -> float:
        return float(spec_features(spec, num_classes, family) @ np.asarray(self.coef))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "quantity": self.quantity, "group": self.group, "features": list(self.features),
                "coef": [float(c) for c in self.coef], "rows": self.rows, "specs": self.specs, "holdout": self.holdout}

    @classmethod
    def from_dict(cls, d: dict) -> "CostModel":
        if not isinstance(d, dict) or d.get("format") != FORMAT or list(d.get("features", [])) != list(FEATURES):
            raise EdgeKWSError(f"not a cost model of this edgekws (expected format {FORMAT} with features {list(FEATURES)})")
        coef = d.get("coef")
        if not isinstance(coef, list) or len(coef) != len(FEATURES) or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and np.isfinite(c) and c >= 0 for c in coef):
            raise EdgeKWSError("cost model coefficients must be one finite, non-negative number per feature")
        return cls(str(d.get("quantity")), dict(d.get("group") or {}), [float(c) for c in coef], int(d.get("rows", 0)),
                   int(d.get("specs", 0)), dict(d.get("holdout") or {}))


def fit(samples: list[tuple[SubnetSpec, float]], quantity: str, group: dict, num_classes: int = 12, family=None,
        folds: int = 5, seed: int = 0) -> CostModel:
    """Fit on (spec, value) samples; the held-out error comes from grouped k-fold by spec."""
    good = [(s, float(v)) for s, v in samples if np.isfinite(v) and v > 0]
    names = sorted({s.name for s, _ in good})
    if len(names) < len(FEATURES) + 1:
        raise EdgeKWSError(f"fitting {quantity} needs rows for at least {len(FEATURES) + 1} different subnets, "
                           f"got {len(names)} (bench a suite with more models, e.g. `sample = 24`)")
    feats = {n: spec_features(s, num_classes, family) for s, _ in good for n in [s.name]}
    x = np.stack([feats[s.name] for s, _ in good])
    y = np.array([v for _, v in good])
    rng = np.random.default_rng(seed)
    order = rng.permutation(names)
    fold_of = {n: i % folds for i, n in enumerate(order)}
    pred = np.empty_like(y)
    for k in range(min(folds, len(names))):
        test = np.array([fold_of[s.name] == k for s, _ in good])
        coef = _fit(x[~test], y[~test])
        pred[test] = x[test] @ coef
    coef = _fit(x, y)
    return CostModel(quantity, group, coef.tolist(), len(y), len(names), errors(pred, y))


# --------------------------------------------------------------------------------------------
# From bench rows

def row_spec(row: dict) -> SubnetSpec | None:
    """The spec a bench row measured: its `spec` record, or parsed from its subnet name (rows
    written before rows carried the spec)."""
    if isinstance(row.get("spec"), dict):
        try:
            return SubnetSpec.from_dict(row["spec"])
        except EdgeKWSError:
            return None
    return SubnetSpec.parse_name(str(row.get("model", "")))


def runtime_version(row: dict) -> str:
    info = row.get("device_info") if isinstance(row.get("device_info"), dict) else {}
    pkg = {"litert": "ai_edge_litert", "onnxruntime": "onnxruntime"}.get(row.get("runtime"), "")
    return str(info.get(pkg) or info.get("tflite_runtime") or "?")


def fit_bench_rows(rows: list[dict], runtime: str, threads: int, device: str | None = None,
                   log=print, family: str | None = None, definition=None) -> dict[str, CostModel]:
    """Latency (median and p95) and model RAM per precision from successful, non-emulated bench
    rows of one device, runtime and thread count, at the newest runtime version they hold.
    `definition` is the family definition whose cost table gives the features (a checkpoint's
    own, `Checkpoint.family_def()`): rows that record another architecture are skipped. Without
    one, the architecture the rows record (`arch`, from the export's manifest) — one only — or
    the registered family's. A row without `arch` (written before rows had it) is read as the
    architecture being fitted."""
    usable = [r for r in rows if r.get("ok") and not r.get("emulated") and r.get("runtime") == runtime
              and r.get("threads") == threads]
    if not usable:
        raise EdgeKWSError(f"no successful measured rows for runtime {runtime} at {threads} thread(s)")
    devices = sorted({r["device"] for r in usable})
    if device is None and len(devices) > 1:
        raise EdgeKWSError(f"the rows come from {len(devices)} devices ({', '.join(devices)}): choose one with --device")
    device = device or devices[0]
    usable = [r for r in usable if r["device"] == device]
    if not usable:
        raise EdgeKWSError(f"no rows from device '{device}' (the rows have {', '.join(devices)})")
    versions = sorted({runtime_version(r) for r in usable})
    if len(versions) > 1:
        newest = max(versions, key=lambda v: [int(p) if p.isdigit() else -1 for p in v.split(".")])
        stale = sum(runtime_version(r) != newest for r in usable)
        log(f"note: {stale} row(s) measured with {runtime} {', '.join(v for v in versions if v != newest)} skipped "
            f"(fitting on {newest}, the newest in the file)")
        usable = [r for r in usable if runtime_version(r) == newest]
        versions = [newest]
    models = {}
    families = sorted({s.family for r in usable for s in [row_spec(r)] if s is not None})
    if family is None and len(families) > 1:
        raise EdgeKWSError(f"the rows measure {len(families)} families ({', '.join(families)}): a cost model is per "
                           f"family; choose one with --family")
    family = family or (families[0] if families else None)
    definition, usable = _one_architecture(usable, family, definition, log)
    for precision in sorted({r["precision"] for r in usable}):
        samples = []
        for r in (r for r in usable if r["precision"] == precision):
            spec = row_spec(r)
            try:
                if spec is None:
                    raise EdgeKWSError("no readable spec")
                if spec.family != family:
                    raise EdgeKWSError(f"family {spec.family}, not {family}")
                spec_features(spec, family=definition)
            except EdgeKWSError as exc:
                log(f"note: row '{r['key']}' skipped: {exc}")
                continue
            samples.append((spec, r))
        group = {"device": device, "runtime": runtime, "runtime_version": versions[0], "precision": precision,
                 "threads": threads}
        if family is not None:  # what the features priced: a saved model says which graph it is for
            from edgekws.checkpoint import arch_dict
            from edgekws.models import get_family

            group.update(family=family, arch=arch_dict((definition or get_family(family)).arch))
        for quantity, get in (("latency_ms", lambda r: r["latency_ms"]["median"]),
                              ("latency_p95_ms", lambda r: r["latency_ms"]["p95"]),
                              ("ram_kb", lambda r: (r.get("rss_kb") or {}).get("model_total") or float("nan"))):
            models[f"{precision}/{quantity}"] = fit([(s, get(r)) for s, r in samples], quantity, group,
                                                    family=definition)
    return models


def _one_architecture(rows: list[dict], family: str | None, definition, log) -> tuple:
    """(definition, rows) for a fit of one architecture: a cost table prices one graph, and kwt's
    stem alone moves its latency by 6-32 % (benchmarks/embed_cost.py)."""
    from edgekws.checkpoint import arch_dict
    from edgekws.models import get_family

    if family is None:
        return definition, rows
    registered = get_family(family)
    arch_of: dict[int, str | None] = {}  # id(row) -> its architecture, normalised (None: not recorded)
    legacy, keep = 0, []
    for r in rows:
        spec = row_spec(r)
        if spec is None or spec.family != family or not isinstance(r.get("arch"), dict):
            legacy += spec is not None and spec.family == family
            arch_of[id(r)] = None
        else:
            try:
                arch_of[id(r)] = json.dumps(arch_dict(registered.with_arch(r["arch"], whose="the row's").arch),
                                            sort_keys=True)
            except EdgeKWSError as exc:
                log(f"note: row '{r['key']}' skipped: {exc}")
                continue
        keep.append(r)
    recorded = sorted({a for a in arch_of.values() if a is not None})
    if definition is None and recorded:
        if len(recorded) > 1:
            raise EdgeKWSError(f"the rows measure {len(recorded)} architectures of family {family} (their exports' "
                               f"`arch` differ): a cost model prices one; choose it with --checkpoint")
        definition = registered.with_arch(json.loads(recorded[0]), whose="the rows'")
    if definition is not None:
        want = json.dumps(arch_dict(definition.arch), sort_keys=True)
        other = [r for r in keep if arch_of[id(r)] not in (None, want)]
        if other:
            log(f"note: {len(other)} row(s) skipped: they measure another architecture of {family} than the one fitted")
            keep = [r for r in keep if arch_of[id(r)] in (None, want)]
    if legacy and recorded:
        log(f"note: {legacy} row(s) record no architecture (written before rows had it): read as the one fitted")
    return definition, keep


def save_models(models: dict[str, CostModel], dest: Path, meta: dict) -> None:
    from edgekws.fileio import write_bytes_atomic

    doc = {"format": FORMAT, **meta, "models": {k: m.to_dict() for k, m in models.items()}}
    write_bytes_atomic(Path(dest), (json.dumps(doc, indent=1) + "\n").encode())
