"""Export speed and int8 accuracy per width, with the shipped supernet and pack.

    python benchmarks/export_bench.py [--checkpoint C | --supernet kwt] [--repeats 3]

For each width multiplier: `edgekws export --width W` run cold (a fresh process, so imports of
torch, TensorFlow and onnxruntime are paid every time) `--repeats` times; the median wall time,
and from the manifest the accuracy of every artefact on the pinned pack. Goals: export ≤ 10 s
wall on 2 cores; int8 within 0.3 pt of float at every width. A width whose export fails its
gates is kept as a row with the failed checks (`passed: false`), not dropped. Writes
results/export.{json,md} for the default supernet, results/export_<checkpoint stem>.{json,md}
for another (`--tag T` appended to the stem, so a rerun elsewhere keeps the earlier file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from edgekws.fileio import write_text_atomic
    from edgekws.targets import host_facts

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--supernet", default=None, help="a shipped family's supernet (edgekws --supernet)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", default="0.25,0.5,0.75,1.0")
    ap.add_argument("--tag", default="", help="appended to the results' file names")
    args = ap.parse_args()
    if args.checkpoint and args.supernet:
        raise SystemExit("give --checkpoint or --supernet, not both")
    rows, failed, manifest = [], [], None
    for w in [float(x) for x in args.widths.split(",")]:
        times, manifest = [], None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                cmd = [sys.executable, "-m", "edgekws", "export", "--width", str(w), "--out", out, "--json"]
                if args.checkpoint:
                    cmd += ["--checkpoint", str(args.checkpoint)]
                if args.supernet:
                    cmd += ["--supernet", args.supernet]
                t0 = time.perf_counter()
                res = subprocess.run(cmd, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                try:
                    doc = json.loads(res.stdout)
                except json.JSONDecodeError:
                    raise SystemExit(f"export --width {w} failed: {res.stderr.strip()}") from None
                if res.returncode != 0:  # a gate failed: keep its figures (the same every repeat)
                    break
                manifest = doc["manifest"]
        if res.returncode != 0:
            failed.append({"width": w, "passed": False, "error": doc["error"], "pytorch_float_accuracy": doc["pytorch_float_accuracy"],
                           "checks": doc["checks"], "onnx_int8_attempts": doc["int8_attempts"]})
            print(json.dumps(failed[-1]))
            continue
        acc = manifest["validation"]["accuracy"]
        rows.append({
            "width": w, "passed": True, "name": manifest["name"], "wall_s_median": round(statistics.median(times), 2),
            "wall_s_all": [round(t, 2) for t in times], "params": manifest["accounting"]["params"],
            "macs": manifest["accounting"]["macs"], "accuracy": acc,
            "int8_minus_float_pt": {fmt: round(100 * (acc[f"{fmt} int8"] - acc["pytorch float"]), 2) for fmt in ("onnx", "tflite")},
            "onnx_int8_scheme": manifest["quantization"]["onnx"]["scheme"]["name"],
            "sizes_bytes": manifest["sizes_bytes"],
        })
        print(json.dumps(rows[-1]))
    result = {"benchmark": "export", "checkpoint": str(args.checkpoint or f"shipped {args.supernet or 'dscnn'}"),
              "repeats": args.repeats, "rows": rows, "failed": failed, "goal": "export <= 10 s cold on 2 cores; int8 within 0.3 pt of float at every width",
              "date": time.strftime("%Y-%m-%d"), "cpu": host_facts()["cpu"]}
    lines = ["| width | subnet | export s (median) | float acc | ONNX int8 | TFLite int8 | int8 KB (tflite) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        a = r["accuracy"]
        lines.append(f"| {r['width']:g} | `{r['name']}` | {r['wall_s_median']:.1f} | {100 * a['pytorch float']:.1f} % "
                     f"| {100 * a['onnx int8']:.1f} % ({r['int8_minus_float_pt']['onnx']:+.1f}, {r['onnx_int8_scheme']}) "
                     f"| {100 * a['tflite int8']:.1f} % ({r['int8_minus_float_pt']['tflite']:+.1f}) "
                     f"| {r['sizes_bytes']['model_int8.tflite'] / 1024:.0f} |")
    for r in failed:
        bad = "; ".join(f"{c['artefact']} {c['metric']} {c['value']:g} (≥/≤ {c['threshold']:g})" for c in r["checks"]
                        if not c["passed"])
        lines.append(f"| {r['width']:g} | failed its gates: {bad} | | {100 * r['pytorch_float_accuracy']:.1f} % | | | |")
    RESULTS.mkdir(exist_ok=True)
    stem = "export" if not (args.checkpoint or args.supernet) else \
        f"export_{args.checkpoint.stem if args.checkpoint else args.supernet + '_supernet'}"
    stem += args.tag
    write_text_atomic(RESULTS / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(RESULTS / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
