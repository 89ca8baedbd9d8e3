"""`edgekws export`: a validated, self-describing deployment folder for one subnet.

    DIR/<subnet-name>/
      model_float.onnx  model_int8.onnx  model_float.tflite  model_int8.tflite
      labels.txt  frontend.json  manifest.json
      golden/  clip_XX.wav, features.npy, expected_*.npy, index.json

Steps: load the checkpoint (the shipped supernet by default) and the pinned pack → extract the
subnet → fold BatchNorm → write each format → validate every artefact with its real runtime
against PyTorch (optimum-style gates, each with its tolerance) → write golden vectors and the
manifest. Everything is built in a temporary folder beside the destination and renamed into place
only when every gate passed: a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgekws.artefacts import FORMATS, PRECISIONS, model_file
from edgekws.errors import EdgeKWSError
from edgekws.export.formats import EXPORT_FORMATS, Check, Job, Thresholds, ValidationReport
from edgekws.fileio import atomic_dir, ensure_writable_dir, sha256_file, sweep_stale
from edgekws.spec import SubnetSpec

__all__ = ["FORMATS", "PRECISIONS", "Check", "ExportResult", "GateError", "Thresholds", "ValidationReport",
           "export_subnet", "parse_list"]


class GateError(EdgeKWSError):
    """An exported artefact failed validation; nothing was written. Carries every check (passed
    or not), the int8 schemes tried and the float reference accuracy, so the CLI can show the
    whole gate table rather than one line."""

    def __init__(self, message: str, report: ValidationReport, attempts: list | None = None):
        super().__init__(message)
        self.report = report
        self.checks = report.checks
        self.attempts = attempts or []
        self.pytorch_accuracy = report.pytorch_float_accuracy


@dataclass
class ExportResult:
    out_dir: Path
    spec: SubnetSpec
    checks: list[Check] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("edgekws", "torch", "numpy", "onnx", "onnxruntime", "tensorflow-cpu", "ai-edge-litert", "tflite-runtime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def parse_list(value: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise EdgeKWSError(f"unknown {what} '{','.join(bad) or value}' (valid: {', '.join(valid)})")
    return items


def export_subnet(
    spec: SubnetSpec | None = None,
    width: float | None = None,
    depth: int | None = None,
    checkpoint: Path | None = None,
    out: Path = Path("export"),
    formats: tuple[str, ...] = FORMATS,
    precisions: tuple[str, ...] = PRECISIONS,
    calibration: int | None = None,
    pack_path: Path | None = None,
    force: bool = False,
    thresholds: Thresholds | dict[str, Thresholds] | None = None,
    golden: int = 8,
    family: str | None = None,
    progress: Callable[[str], None] | None = None,
    int8_optional: bool = False,
) -> ExportResult:
    """Extract `spec` (or the uniform `width`/`depth` subnet) from a supernet checkpoint,
    convert it to every requested format and precision, validate each artefact against float
    PyTorch on the pinned pack, and write the folder only if every gate passes. `progress` is
    told each stage as it starts (exports take 5-15 s). `thresholds`: one set for every format,
    one per format name, or None for each format's own defaults.

    `family` without a checkpoint exports an **untrained reference** of that family (seeded
    weights, synthetic inputs): a latency and memory reference such as MLPerf Tiny's DS-CNN,
    marked untrained in the manifest, validated for conversion parity only.

    `int8_optional`: an int8 artefact that fails its gates is left out (the manifest's `refused`
    says which and why) instead of failing the export, as long as every float artefact passes.
    The release uses it: a subnet whose int8 is not accurate enough is still a float candidate,
    and its int8 is never measured or shipped. A user's `export` asked for int8 and fails."""
    import torch

    say = progress or (lambda stage: None)

    from edgekws.accounting import account
    from edgekws.assets import DEFAULT_CHECKPOINT, DEFAULT_PACK, load_pack
    from edgekws.checkpoint import arch_dict, load_checkpoint
    from edgekws.extract import deployable_subnet

    if family is not None and (checkpoint is not None or pack_path is not None):
        raise EdgeKWSError("an untrained reference (--family) takes no --checkpoint or --pack")
    ck_path = None if family is not None else Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    ck, pack = reference(family) if family is not None else (load_checkpoint(ck_path), None)
    if spec is not None and spec.family != ck.family:
        raise EdgeKWSError(f"spec is for family '{spec.family}' but the checkpoint is '{ck.family}' "
                           f"(export --family {spec.family} gives an untrained latency reference)")
    spec = ck.pick(spec, width, depth)
    pack = pack or load_pack(Path(pack_path) if pack_path else DEFAULT_PACK)
    if tuple(pack.labels) != tuple(ck.labels):
        raise EdgeKWSError(f"pack labels {list(pack.labels)} differ from the checkpoint's {list(ck.labels)}")
    if ck.calibration is None:
        raise EdgeKWSError(f"{ck_path}: checkpoint carries no calibration set; retrain it with this edgekws")
    n_calib = len(ck.calibration)
    if calibration is None:
        calibration = min(200, n_calib)
    if calibration < 1 or calibration > n_calib:
        raise EdgeKWSError(f"--calibration {calibration} is outside the checkpoint's calibration set (valid: 1..{n_calib})")
    ensure_writable_dir(Path(out))
    dest = Path(out) / spec.name
    if dest.exists() and not force:
        raise EdgeKWSError(f"'{dest}' already exists (use --force to replace it)")
    shape = ck.features.shape
    bn_calib = ck.calibration_features()  # pinned training examples, never the test pack
    calib = bn_calib[:calibration]

    say("extracting the subnet")
    net, recalibrated = deployable_subnet(ck, spec)
    bn_note = (f"BN statistics recalibrated on the checkpoint's {len(bn_calib)} pinned training examples, then folded"
               if recalibrated else "no BatchNorm")
    with torch.no_grad():
        ref = net(torch.from_numpy(pack.features)).numpy()
    if ck_path is None:  # untrained: the "labels" of the synthetic inputs are the float model's answers
        pack.targets = ref.argmax(1).astype(np.int64)
    ref_acc = float((ref.argmax(1) == pack.targets).mean())

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise EdgeKWSError(f"unknown format '{unknown[0]}' (valid: {', '.join(EXPORT_FORMATS)})")
    per_format = {name: thresholds if isinstance(thresholds, Thresholds)
                  else (thresholds or {}).get(name, EXPORT_FORMATS[name].thresholds) for name in formats}
    if ck_path is None:  # untrained: no labels, so the drop gate would repeat the agreement gate
        from dataclasses import replace

        per_format = {k: replace(v, int8_max_drop_pt=100.0) for k, v in per_format.items()}

    def int8_gate(file: str, y: np.ndarray) -> list[Check]:
        t = per_format[file.rsplit(".", 1)[1]]
        agree = float((y.argmax(1) == ref.argmax(1)).mean())
        drop = 100.0 * (ref_acc - float((y.argmax(1) == pack.targets).mean()))
        return [Check(file, "top-1 agreement", round(agree, 4), t.int8_agreement, agree >= t.int8_agreement),
                Check(file, "accuracy drop (pt)", round(drop, 2), t.int8_max_drop_pt, drop <= t.int8_max_drop_pt)]

    def float_gate(file: str, y: np.ndarray) -> Check:
        t = per_format[file.rsplit(".", 1)[1]]
        diff = float(np.abs(y - ref).max())
        return Check(file, "max abs diff", diff, t.float_atol, diff <= t.float_atol)

    checks: list[Check] = []
    files: dict[str, bytes] = {}
    quant: dict = {}
    outputs: dict[str, np.ndarray] = {"pytorch_float": ref}
    sweep_stale(Path(tempfile.gettempdir()), "edgekws-export-*")  # what killed exports left behind
    with tempfile.TemporaryDirectory(prefix="edgekws-export-") as work:
        job = Job(net, spec.family, shape, calib, calibration, pack.features, Path(work), int8_gate, float_gate)
        for name in EXPORT_FORMATS:  # registry order (onnx, tflite, then any registered); float, then int8
            if name not in formats:
                continue
            fmt = EXPORT_FORMATS[name]
            for precision in PRECISIONS:
                if precision not in precisions:
                    continue
                say(f"{name} {precision}")
                art = fmt.build(precision, job)
                files[art.file] = art.data
                outputs[f"{name}_{precision}"] = art.outputs
                checks.extend(art.checks)
                if art.quantization is not None:
                    quant[name] = art.quantization

    refused: dict[str, dict] = {}
    bad = {c.artefact for c in checks if not c.passed}
    if int8_optional and bad and len(bad) < len(files) and all(a.split(".")[0].endswith("_int8") for a in bad):
        for fmt_name in formats:
            file = model_file(fmt_name, "int8")
            if file in bad:
                refused[file] = {"reason": "failed its accuracy gates",
                                 "checks": [asdict(c) for c in checks if c.artefact == file],
                                 "accuracy": round(float((outputs.pop(f"{fmt_name}_int8").argmax(1) == pack.targets).mean()), 4),
                                 "quantization": quant.pop(fmt_name, None)}
                files.pop(file)
        checks = [c for c in checks if c.artefact not in refused]

    same = len({p for p in per_format.values()}) <= 1
    report = ValidationReport(
        len(pack), ref_acc,
        {k.replace("_", " "): round(float((v.argmax(1) == pack.targets).mean()), 4) for k, v in outputs.items()},
        asdict(next(iter(per_format.values()), Thresholds())) if same else {k: asdict(v) for k, v in per_format.items()},
        checks)
    result = ExportResult(dest, spec, checks)
    if not report.passed:
        failed = "; ".join(f"{c.artefact} {c.metric} {c.value} vs {c.threshold}" for c in report.failed())
        raise GateError(f"export of {spec.name} failed its gates ({failed}); nothing was written", report,
                        quant.get("onnx", {}).get("attempts", []))
    say("golden vectors and manifest")

    acc = account(spec, len(ck.labels), shape, family=ck.family_def())
    tools = _versions()
    with atomic_dir(dest, overwrite=force) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "labels.txt").write_text("".join(f"{l}\n" for l in ck.labels))
        (tmp / "frontend.json").write_text(ck.features.to_json() + "\n")
        _write_golden(tmp / "golden", net, files, pack, golden, ck.features, tools)
        manifest = {
            "format": "edgekws.export/1",
            "spec": spec.to_dict(),
            "name": spec.name,
            "family": spec.family,
            # the family's architecture arguments this model was built with (the checkpoint's, not
            # the registry's): what a cost model prices its graph by, and a C port's reference
            "arch": arch_dict(ck.family_def().arch),
            "labels": list(ck.labels),
            "input": {"name": "features", "shape": [1, *shape], "dtype": "float32 (int8 for model_int8.tflite)",
                      "layout": "(batch, frames, n_mels) log-mel, see frontend.json",
                      **_input_norm_note(ck.input_norm)},
            "output": {"name": "logits", "shape": [1, len(ck.labels)]},
            "accounting": {k: v for k, v in acc.to_dict().items() if k not in ("spec", "name")},
            "sizes_bytes": {name: len(data) for name, data in sorted(files.items())},
            "quantization": quant,
            "bn": bn_note,
            "checkpoint": ({"path": ck_path.name, "sha256": sha256_file(ck_path), "family": ck.family,
                            "test_metrics": ck.metrics.get("test", {}), **one_spec_provenance(ck)}
                           if ck_path is not None else
                           {"untrained": True, "family": ck.family, "seed": 0,
                            "note": "seeded initial weights: a latency and memory reference, not a keyword spotter; "
                                    "validated on synthetic inputs for conversion parity only"}),
            "validation": report.to_dict(),
            **({"refused": refused} if refused else {}),
            "tools": tools,
        }
        manifest["files"] = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    result.manifest = manifest
    return result


def one_spec_provenance(ck) -> dict:
    """For a one-spec checkpoint (a twin, or `edgekws finetune`'s output): how it was trained and
    from which files (name and sha256), so a manifest names the supernet a fine-tuned subnet
    came from. Nothing for a supernet, whose manifests stay as they were."""
    if ck.only_spec is None:
        return {}
    cfg = ck.train_config
    src = {k: {"path": Path(cfg[k]).name, "sha256": cfg.get(f"{k}_sha256")} for k in ("init", "teacher") if cfg.get(k)}
    return {"one_spec": {"epochs": cfg.get("epochs"), "lr": cfg.get("lr"), **src}}


def reference(family: str, examples: int = 256, calibration: int = 512):
    """An untrained checkpoint of `family` (seed 0) and a synthetic pack of its input shape: what
    exports a latency reference that needs no trained weights (MLPerf Tiny's DS-CNN, 49×10)."""
    import torch

    from edgekws.assets import Pack
    from edgekws.checkpoint import Checkpoint
    from edgekws.data import get_protocol
    from edgekws.features import FeatureConfig
    from edgekws.models import DEFAULT_INPUT, get_family

    fam = get_family(family)
    shape = fam.input_shape or DEFAULT_INPUT
    feats = FeatureConfig(n_mels=shape[1])
    if feats.shape != tuple(shape):
        raise EdgeKWSError(f"family '{family}' input {shape} has no matching feature config")
    labels = tuple(get_protocol("12").labels)
    torch.manual_seed(0)
    state = fam.supernet(len(labels), shape).state_dict()
    rng = np.random.default_rng(0)
    calib = torch.from_numpy(rng.standard_normal((calibration, *shape)).astype(np.float32)).to(torch.float16)
    ck = Checkpoint(family, fam.space, feats, labels, state, {"untrained": True, "seed": 0}, {}, calib)
    x = rng.standard_normal((examples, *shape)).astype(np.float32)
    pack = Pack(x, np.zeros(examples, np.int64), [f"synthetic_{i:04d}" for i in range(examples)], labels,
                np.zeros((0, feats.clip_samples), np.int16))
    return ck, pack


def _write_golden(folder: Path, net, files: dict[str, bytes], pack, n: int, feat_cfg, tools: dict) -> None:
    """A handful of real clips: audio, reference features, and every artefact's expected output."""
    import torch

    from edgekws.audio import write_wav
    from edgekws.features import logmel_numpy

    folder.mkdir()
    if len(pack.waves):
        n = min(n, len(pack.waves))
        waves = pack.waves[:n]
        feats = logmel_numpy(waves.astype(np.float32) / 32768.0, feat_cfg)
        for i, w in enumerate(waves):
            write_wav(folder / f"clip_{i:02d}.wav", w)
    else:  # an untrained reference: synthetic features, no audio
        n = min(n, len(pack.features))
        feats = np.ascontiguousarray(pack.features[:n], dtype=np.float32)
    np.save(folder / "features.npy", feats)
    with torch.no_grad():
        np.save(folder / "expected_pytorch_float.npy", net(torch.from_numpy(feats)).numpy())
    index = {"clips": [f"clip_{i:02d}.wav" for i in range(n)] if len(pack.waves) else [], "keys": pack.keys[:n],
             "labels": [pack.labels[t] for t in pack.targets[:n]], "features": "features.npy (float32, n × frames × n_mels)",
             "expected": {}}
    for name, data in files.items():
        EXPORT_FORMATS[name.rsplit(".", 1)[1]].golden(name, data, feats, folder, index, tools)  # model_<p>.<format>
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n")


def _input_norm_note(mode: str) -> dict:
    """What a firmware port must know of `--input-norm` (nothing to do: the graph has it); absent
    for models without it, so their manifests stay byte for byte what they were."""
    if mode == "none":
        return {}
    what = {"band_mean": "subtracts each mel band's mean over the clip",
            "spectral_shape": "subtracts each mel band's mean over the clip less their mean over the bands"}[mode]
    return {"normalisation": f"{mode}: the model itself {what} (MEAN and SUB ops in the graph); "
                             "feed the frontend's log-mels unchanged"}
