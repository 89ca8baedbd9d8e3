"""Rows a latency model is fitted on, for tiers measured here: this host's runner (latency and
model RAM, measured) and qemu-user instruction counts per Arm core type (latency *estimated*, see
estimate.py). Boards are measured with `edgekws bench` instead; its rows feed the same fit.

Every row is a versioned record — what was measured (spec, the model file's sha256, the
checkpoint's sha256), where (device or emulated CPU, runtime and its version, threads) and how —
appended to a JSONL file as soon as it exists (fsynced), so an interrupted release resumes
without measuring anything twice, and rows of another checkpoint or runtime version are never
mixed in silently.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekws.artefacts import PRECISION_FILE
from edgekws.errors import EdgeKWSError
from edgekws.spec import SearchSpace, SubnetSpec

RECORD = "edgekws.measure/1"


def sample_specs(space: SearchSpace, n: int, seed: int = 0) -> list[SubnetSpec]:
    """The shipped width multipliers, then `n` specs drawn from the trained space (distinct)."""
    specs = list(dict.fromkeys(space.width_multiplier_specs().values()))
    rng = np.random.default_rng(seed)
    tries = 0
    while len(specs) < len(space.width_multipliers) + n and tries < 100 * (n + 1):
        s = space.sample(rng)
        tries += 1
        if s not in specs:
            specs.append(s)
    return specs


@dataclass
class RowLog:
    """Measurement rows, one JSON object per line, keyed. Appends go through the bench's
    `ResultsFile` (fsynced; a torn last line from a crash is set aside before the first append);
    reading skips any line that is not one of our records, so its row is simply measured again."""

    path: Path

    def __post_init__(self) -> None:
        from edgekws.bench import ResultsFile

        self._file = ResultsFile(self.path)

    def read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        rows = {}
        for raw in self.path.read_bytes().split(b"\n"):
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                continue
            if isinstance(row, dict) and row.get("record") == RECORD and isinstance(row.get("key"), str):
                rows[row["key"]] = row
        return rows

    def append(self, row: dict) -> None:
        self._file.append(row)


def export_cached(spec: SubnetSpec, checkpoint: Path, cache: Path, checkpoint_sha256: str) -> Path:
    """The spec's export folder under `cache` (the checkpoint's sha256 names it), made once. An
    int8 artefact that fails its gates is left out of it (`refused` in its manifest): that spec
    stays a float candidate, and its int8 is neither measured nor released."""
    from edgekws.export import export_subnet

    folder = cache / f"ckpt-{checkpoint_sha256[:16]}" / spec.name
    if not (folder / "manifest.json").exists():
        export_subnet(spec=spec, checkpoint=checkpoint, out=folder.parent, force=True, int8_optional=True)
    return folder


def collect(specs: list[SubnetSpec], checkpoint: Path, cache: Path, rows: RowLog, host_runtimes: list[tuple[str, int]],
            cpus: list[tuple[str, str]], precisions: tuple[str, ...] = ("float", "int8"), runs: int = 200,
            log: Callable[[str], None] = print) -> dict[str, dict]:
    """Measure what is missing: for each spec and precision, this host's runner for each
    (runtime, threads) in `host_runtimes`, and an instruction count for each (cpu, runtime) in
    `cpus`. Returns every row (old and new) by key."""
    from edgekws.estimate import count_instructions
    from edgekws.fileio import sha256_file
    from edgekws.manifest import load_manifest
    from edgekws.profile import run_runner
    from edgekws.runner import versions

    have = rows.read()
    ck_sha = sha256_file(checkpoint)
    todo = []
    for spec in specs:
        for prec in precisions:
            for rt, th in host_runtimes:
                todo.append(("host", spec, prec, rt, th))
            for cpu, rt in cpus:
                todo.append(("insn", spec, prec, rt, cpu))
    host_versions = None  # imports both runtimes: only when something is measured here
    refused: set[tuple[str, str]] = set()
    done = 0
    for kind, spec, prec, rt, where in todo:
        key = f"{kind}|{ck_sha[:16]}|{spec.name}|{rt}|{prec}|{where}"
        if key in have:
            continue
        folder = export_cached(spec, checkpoint, cache, ck_sha)
        manifest = load_manifest(folder)
        model = folder / PRECISION_FILE[(rt, prec)]
        if model.name in manifest.get("refused", {}):
            if (spec.name, model.name) not in refused:
                refused.add((spec.name, model.name))
                log(f"  {spec.name}: {model.name} failed its accuracy gates: not measured, never released")
            continue
        base = {"record": RECORD, "key": key, "kind": kind, "spec": spec.to_dict(), "name": spec.name, "runtime": rt,
                "precision": prec, "checkpoint_sha256": ck_sha, "model_sha256": manifest["files"][model.name],
                "model_bytes": model.stat().st_size, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        t = time.perf_counter()
        if kind == "host":
            host_versions = host_versions or versions()
            r = run_runner([model], rt, where, runs, max(10, runs // 10), op_profile=False)["results"][0]
            if not r.get("ok", True) or "latency_ms" not in r:
                raise EdgeKWSError(f"measuring {spec.name} {rt} {prec} here failed: {r.get('error')}")
            row = {**base, "device": "local", "threads": where, "runtime_version": host_versions.get(
                   "ai_edge_litert" if rt == "litert" else "onnxruntime", "?"), "latency_ms": r["latency_ms"],
                   "ram_kb": (r.get("rss_kb") or {}).get("model_total")}
        else:
            c = count_instructions(model, rt, where)
            row = {**base, "cpu": where, "threads": 1, "instructions": c["instructions"], "counts": c["totals"],
                   "runtime_version": "sysroot bookworm"}
        rows.append(row)
        have[key] = row
        done += 1
        log(f"  measured {spec.name} {rt} {prec} {'here' if kind == 'host' else 'on ' + where} "
            f"({time.perf_counter() - t:.1f} s)" + (f": {row['instructions']:,} instructions" if kind == "insn"
                                                    else f": median {row['latency_ms']['median']:.4f} ms"))
    return have
