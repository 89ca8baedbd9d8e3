"""Device tiers as data: `targets/*.toml` → `DeviceTarget`.

A target says what the board is (CPU, cores, memory), how to run models on it (runtime and
threads) and what a model may cost there (budgets). A malformed file is an error that names the
file, the key and the type expected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.fileio import load_toml, shown_key, typed

TARGETS_DIR = Path(__file__).resolve().parent / "assets" / "targets"  # package data: a wheel has them too
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
    clock_ghz: float | None = None  # turns instruction counts into estimated latency (estimate.py)
    device: str | None = None  # the tier's board (e.g. ssh://pi@pi4.lab): its bench rows are measured latency


def host_facts() -> dict:
    """This machine as a target: CPU model and the vector extensions that decide int8 kernels
    (AVX2, AVX-512, VNNI), logical cores and memory — read at run time, so a target that says
    `cpu = "auto"` describes whichever host runs it rather than the one it was written on."""
    import os
    import platform

    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == platform.machine():
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    ext = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("NEON", "asimd")) if flag in flags]
    ext.append("VNNI" if flags & {"avx512_vnni", "avx_vnni"} else "no VNNI") if "avx2" in flags else None
    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        memory_mb = 1024
    return {"cpu": f"{model} ({platform.machine()}{': ' + ', '.join(ext) if ext else ''})",
            "cores": os.cpu_count() or 1, "memory_mb": int(memory_mb), "arch": platform.machine()}


def load_target(path: Path) -> DeviceTarget:
    path = Path(path)
    doc = load_toml(path, "target file")
    where = str(path)
    auto = [k for k in ("cpu", "cores", "memory_mb", "arch") if doc.get(k) == "auto"]
    if auto:  # "auto": this host, as it is now
        facts = host_facts()
        doc = {**doc, **{k: facts[k] for k in auto}}
    top = {name: typed(doc, name, typ, where, **rng) for name, typ, rng in (
        ("name", str, {}), ("cpu", str, {}), ("arch", str, {}), ("cores", int, {"lo": 1, "hi": 1024}),
        ("memory_mb", int, {"lo": 1}), ("threads", int, {"lo": 1}), ("runtime", str, {}))}
    top["clock_ghz"] = typed(doc, "clock_ghz", float, where, default=None, positive=True, hi=10)
    top["device"] = typed(doc, "device", str, where, default=None)
    b = doc.get("budgets")
    if not isinstance(b, dict):
        raise EdgeKWSError(f"{path}: missing table '[budgets]'")
    budgets = Budgets(*(typed(b, f.name, {"int": int, "float": float}[f.type], where, prefix="budgets.", positive=True)
                        for f in fields(Budgets)))
    unknown = sorted(set(doc) - set(top) - {"budgets"})
    unknown += sorted(f"budgets.{k}" for k in set(b) - {f.name for f in fields(Budgets)})
    if unknown:
        raise EdgeKWSError(f"{path}: unknown key(s) {', '.join(map(shown_key, unknown))} (a typo?)")
    target = DeviceTarget(key=path.stem, budgets=budgets, **top)
    if target.runtime not in RUNTIMES:
        raise EdgeKWSError(f"{path}: key 'runtime' must be one of {', '.join(RUNTIMES)}, got {target.runtime!r}")
    if target.threads > target.cores:
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
