"""Latency against the MAC roofline of one core, from a `edgekws bench` results file.

    OMP_NUM_THREADS=1 python benchmarks/host_roofline.py benchmarks/results/host_widths.jsonl

The roofline is measured, not quoted: single-threaded float32 GEMM throughput of this core
(numpy's BLAS, 512×512 matrices, median of 20), in MAC/s. For each model, the best precision's
median latency (1 thread) is compared with MACs / roofline. Goals: best-precision latency within
1.5× of the roofline, and the smallest width at ≤ 0.35× the largest's latency.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def gemm_macs_per_s(n: int = 512, reps: int = 20) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return n**3 / statistics.median(times)


def main() -> None:
    path = Path(sys.argv[1])
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    rows = [r for r in rows if r.get("ok") and r["threads"] == 1 and r["device"] == "local"]
    roof = gemm_macs_per_s()
    models: dict[str, dict] = {}
    for r in rows:
        m = models.setdefault(r["model"], {"macs": r["macs"], "params": r["params"], "latency_ms": {}})
        m["latency_ms"][f"{r['runtime']} {r['precision']}"] = r["latency_ms"]["median"]
    out = []
    for name, m in sorted(models.items(), key=lambda kv: kv[1]["macs"]):
        best_key = min(m["latency_ms"], key=m["latency_ms"].get)
        best = m["latency_ms"][best_key]
        roof_ms = m["macs"] / roof * 1000
        out.append({"model": name, "macs": m["macs"], "best": best_key, "best_ms": best, "roofline_ms": round(roof_ms, 4),
                     "x_roofline": round(best / roof_ms, 2), "all_ms": m["latency_ms"]})
    ratio = out[0]["best_ms"] / out[-1]["best_ms"] if len(out) > 1 else None
    result = {"benchmark": "host_roofline", "gemm_gmacs_per_s_1core": round(roof / 1e9, 2), "rows": out,
              "smallest_over_largest_latency": round(ratio, 3) if ratio else None,
              "goals": "best-precision latency <= 1.5x roofline; smallest width <= 0.35x largest's latency",
              "source": str(path), "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "host_roofline.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"One-core float32 GEMM roofline: {roof / 1e9:.1f} GMAC/s", "",
             "| subnet | MACs | best (1 thread) | median ms | roofline ms | × roofline | all medians (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for o in out:
        lines.append(f"| `{o['model']}` | {o['macs'] / 1e6:.2f}M | {o['best']} | {o['best_ms']:.3f} | {o['roofline_ms']:.3f} "
                     f"| {o['x_roofline']:.1f} | " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(o["all_ms"].items())) + " |")
    if ratio:
        lines.append(f"\nSmallest / largest width latency: {ratio:.2f}")
    (RESULTS / "host_roofline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
