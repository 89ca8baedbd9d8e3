"""Export speed and int8 accuracy per width, with the shipped supernet and pack.

    python benchmarks/export_bench.py [--checkpoint C] [--repeats 3]

For each width multiplier: `edgekws export --width W` run cold (a fresh process, so imports of
torch, TensorFlow and onnxruntime are paid every time) `--repeats` times; the median wall time,
and from the manifest the accuracy of every artefact on the pinned pack. Goals: export ≤ 10 s
wall on 2 cores; int8 within 0.3 pt of float at every width.
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", default="0.25,0.5,0.75,1.0")
    args = ap.parse_args()
    rows = []
    for w in [float(x) for x in args.channels.split(",")]:
        times, manifest = [], None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                cmd = [sys.executable, "-m", "edgekws", "export", "--width", str(w), "--out", out, "--json"]
                if args.checkpoint:
                    cmd += ["--checkpoint", str(args.checkpoint)]
                t0 = time.perf_counter()
                res = subprocess.run(cmd, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if res.returncode != 0:
                    raise SystemExit(f"export --width {w} failed: {res.stderr.strip()}")
                manifest = json.loads(res.stdout)["manifest"]
        acc = manifest["validation"]["accuracy"]
        rows.append({
            "width": w, "name": manifest["name"], "wall_s_median": round(statistics.median(times), 2),
            "wall_s_all": [round(t, 2) for t in times], "params": manifest["accounting"]["params"],
            "macs": manifest["accounting"]["macs"], "accuracy": acc,
            "int8_minus_float_pt": {fmt: round(100 * (acc[f"{fmt} int8"] - acc["pytorch float"]), 2) for fmt in ("onnx", "tflite")},
            "onnx_int8_scheme": manifest["quantization"]["onnx"]["scheme"]["name"],
            "sizes_bytes": manifest["sizes_bytes"],
        })
        print(json.dumps(rows[-1]))
    result = {"benchmark": "export", "repeats": args.repeats, "pack_examples": manifest["validation"]["pack_examples"],
              "rows": rows, "goal": "export <= 10 s cold on 2 cores; int8 within 0.3 pt of float at every width",
              "date": time.strftime("%Y-%m-%d")}
    lines = ["| width | subnet | export s (median) | float acc | ONNX int8 | TFLite int8 | int8 KB (tflite) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        a = r["accuracy"]
        lines.append(f"| {r['width']:g} | `{r['name']}` | {r['wall_s_median']:.1f} | {100 * a['pytorch float']:.1f} % "
                     f"| {100 * a['onnx int8']:.1f} % ({r['int8_minus_float_pt']['onnx']:+.1f}, {r['onnx_int8_scheme']}) "
                     f"| {100 * a['tflite int8']:.1f} % ({r['int8_minus_float_pt']['tflite']:+.1f}) "
                     f"| {r['sizes_bytes']['model_int8.tflite'] / 1024:.0f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "export.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
