"""`edgekws profile`: what an exported model costs on a device tier, against its budgets.

Latency and memory are measured by the on-board runner (`edgekws/runner.py`) in fresh child
processes with the target's runtime and thread count, for the float and the int8 artefact: which
precision wins is a per-device measurement (on our x86 build host XNNPACK int8 is slower than
float for a DS-CNN). Params, MACs and sizes come from the export's manifest. On a host whose
architecture differs from the target's, the latency figures are the host's: they are marked as
such, and `edgekws bench --device` measures on the board itself.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from edgekws.artefacts import RUNTIME_FILES
from edgekws.errors import EdgeKWSError
from edgekws.targets import DeviceTarget



@dataclass
class BudgetCheck:
    what: str
    value: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.value <= self.limit


def run_runner(models: list[Path], runtime: str, threads: int, runs: int, warmup: int, op_profile: bool = True) -> dict:
    """The on-board runner on this machine: the bench's local device, errors as one line."""
    from edgekws.devices import DeviceError
    from edgekws.devices.local import LocalDevice

    args = ["--runtime", runtime, "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    for m in models:
        args += ["--model", str(m)]
    if op_profile:
        args.append("--op-profile")
    try:
        return LocalDevice("local").run(args, timeout=3600)
    except DeviceError as exc:
        raise EdgeKWSError(f"runner failed: {exc}") from None


def profile_export(folder: Path, target: DeviceTarget, runs: int = 200, warmup: int = 20) -> dict:
    from edgekws.manifest import load_manifest

    folder = Path(folder)
    manifest = load_manifest(folder)
    models = [folder / name for name in RUNTIME_FILES[target.runtime] if (folder / name).exists()]
    if not models:
        raise EdgeKWSError(f"'{folder}' has no {target.runtime} artefacts ({', '.join(RUNTIME_FILES[target.runtime])})")
    measured = run_runner(models, target.runtime, target.threads, runs, warmup)
    acc = manifest["accounting"]
    b = target.budgets
    rows = []
    for r in measured["results"]:
        if not r.get("ok"):
            rows.append({"model": r["model"], "ok": False, "error": r.get("error")})
            continue
        checks = [
            BudgetCheck("params", acc["params"], b.max_params),
            BudgetCheck("model KB", r["model_bytes"] / 1024, b.max_model_kb),
            BudgetCheck("RAM KB", r["rss_kb"]["model_total"] or 0, b.max_ram_kb),
            BudgetCheck("p95 ms", r["latency_ms"]["p95"], b.max_p95_latency_ms),
        ]
        rows.append({**r, "budgets": [{"what": c.what, "value": round(c.value, 3), "limit": c.limit, "passed": c.passed}
                                      for c in checks], "within_budgets": all(c.passed for c in checks)})
    ok = [r for r in rows if r.get("ok")]
    fastest = min(ok, key=lambda r: r["latency_ms"]["median"])["precision"] if ok else None
    host = platform.machine()
    return {
        "export": str(folder), "name": manifest["name"], "target": target.key, "target_name": target.name,
        "runtime": target.runtime, "threads": target.threads, "params": acc["params"], "macs": acc["macs"],
        "accuracy": manifest["validation"]["accuracy"], "device": measured["device"], "results": rows,
        "fastest_precision": fastest,
        "measured_on_target_arch": host == target.arch or (host in ("aarch64", "arm64") and target.arch == "aarch64"),
        "note": None if host == target.arch else
        f"latency measured on this {host} host, not on a {target.cpu}: indicative only (use `edgekws bench --device`)",
    }
