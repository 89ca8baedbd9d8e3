"""Device tiers as data: `targets/*.toml` → `DeviceTarget`.

A target says what the board is (CPU, cores, memory), how to run models on it (runtime and
threads) and what a model may cost there (budgets). A malformed file is an error that names the
file, the key and the type expected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.fileio import load_toml

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"
RUNTIMES = ("litert", "onnxruntime")


@dataclass(frozen=True)
class Budgets:
    max_params: int
    max_model_kb: float
    max_ram_kb: float
    max_p95_latency_ms: float


@dataclass(frozen=True)
class DeviceTarget:
    key: str  # file stem, e.g. "pi4"
    name: str
    cpu: str
    arch: str
    cores: int
    memory_mb: int
    threads: int
    runtime: str
    budgets: Budgets


_TYPES = {int: "an integer", float: "a number", str: "a string"}


def _field(doc: dict, key: str, typ: type, path: Path, prefix: str = ""):
    if key not in doc:
        raise EdgeKWSError(f"{path}: missing key '{prefix}{key}' ({_TYPES[typ]})")
    v = doc[key]
    ok = isinstance(v, typ) and not isinstance(v, bool) or (typ is float and isinstance(v, int) and not isinstance(v, bool))
    if not ok:
        raise EdgeKWSError(f"{path}: key '{prefix}{key}' must be {_TYPES[typ]}, got {type(v).__name__} {v!r}")
    return typ(v)


def load_target(path: Path) -> DeviceTarget:
    path = Path(path)
    doc = load_toml(path, "target file")
    top = {name: _field(doc, name, typ, path) for name, typ in (("name", str), ("cpu", str), ("arch", str), ("cores", int),
                                                                   ("memory_mb", int), ("threads", int), ("runtime", str))}
    b = doc.get("budgets")
    if not isinstance(b, dict):
        raise EdgeKWSError(f"{path}: missing table '[budgets]'")
    budgets = Budgets(*(_field(b, f.name, {"int": int, "float": float}[f.type], path, "budgets.") for f in fields(Budgets)))
    target = DeviceTarget(key=path.stem, budgets=budgets, **top)
    if target.runtime not in RUNTIMES:
        raise EdgeKWSError(f"{path}: key 'runtime' must be one of {', '.join(RUNTIMES)}, got {target.runtime!r}")
    if target.threads < 1 or target.threads > target.cores:
        raise EdgeKWSError(f"{path}: key 'threads' must be between 1 and cores ({target.cores}), got {target.threads}")
    return target


def list_targets(folder: Path = TARGETS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.toml"))


def get_target(name_or_path: str, folder: Path = TARGETS_DIR) -> DeviceTarget:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return load_target(p)
    candidate = Path(folder) / f"{name_or_path}.toml"
    if not candidate.exists():
        raise EdgeKWSError(f"unknown target '{name_or_path}' (valid: {', '.join(list_targets(folder))})")
    return load_target(candidate)
