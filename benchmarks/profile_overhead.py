"""What `profile` reports for ONNX Runtime models with the operator profiler on while timing (the
old behaviour) vs off (now: per-operator times come from a separate pass), and the runner's
"model RAM" before and after its own numpy.random import moved out of the model's share.

    python benchmarks/profile_overhead.py [--widths 0.25 0.75] [--runs 300] [--repeats 3]

Exports each width of the shipped supernet once (cached under --work), then for each ONNX model
runs the on-board runner here, alternating the two modes `--repeats` times in one run, and
reports the median of the medians. Writes benchmarks/results/profile_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run(model: Path, runs: int, extra: list[str]) -> dict:
    from edgekws.devices import RUNNER

    out = subprocess.run([sys.executable, str(RUNNER), "--model", str(model), "--runtime", "onnxruntime", "--threads", "1",
                          "--runs", str(runs), "--warmup", "20", *extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["results"][0]


def main() -> None:
    from edgekws.export import export_subnet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.75])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekws-profile-overhead"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in args.widths:
        folder = next(iter(sorted(args.work.glob(f"w{w:g}/*/manifest.json"))), None)
        folder = folder.parent if folder else export_subnet(width=w, out=args.work / f"w{w:g}", force=True).out_dir
        for precision in ("float", "int8"):
            model = folder / f"model_{precision}.onnx"
            medians = {"profiler_off": [], "profiler_on": []}
            ram = []
            for _ in range(args.repeats):
                off = run(model, args.runs, ["--op-profile"])
                on = run(model, args.runs, ["--profile-while-timing"])
                medians["profiler_off"].append(off["latency_ms"]["median"])
                medians["profiler_on"].append(on["latency_ms"]["median"])
                ram.append(off["rss_kb"]["model_total"])
            off_ms, on_ms = statistics.median(medians["profiler_off"]), statistics.median(medians["profiler_on"])
            row = {"width": w, "precision": precision, "model": folder.name, "median_ms_profiler_off": off_ms,
                   "median_ms_profiler_on": on_ms, "inflation": round(on_ms / off_ms, 2),
                   "model_ram_kb": statistics.median(ram), "top_ops": list(off.get("op_profile_ms") or {})[:3]}
            rows.append(row)
            print(f"w{w:g} onnx {precision}: {off_ms:.4f} ms without the profiler, {on_ms:.4f} ms with it "
                  f"({row['inflation']}x); model RAM {row['model_ram_kb']} KB", flush=True)
    RESULTS.mkdir(exist_ok=True)
    doc = {"benchmark": "profile_overhead", "date": time.strftime("%Y-%m-%d"), "runs": args.runs,
           "repeats": args.repeats, "rows": rows}
    (RESULTS / "profile_overhead.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| model | precision | median ms, profiler off | median ms, profiler on | inflation | model RAM KB |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['precision']} | {r['median_ms_profiler_off']:.4f} | {r['median_ms_profiler_on']:.4f} | "
              f"{r['inflation']}× | {r['model_ram_kb']} |" for r in rows]
    (RESULTS / "profile_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
