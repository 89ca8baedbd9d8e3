"""What a change of architecture costs a deployed subnet: params, MACs, activations and the
estimated latency on Arm tiers, for the same widths exported from two or more checkpoints.

    python benchmarks/embed_cost.py linear=A.pt conv=B.pt [--widths 0.25 0.5 1.0]
        [--targets pi3 pi5] [--tag _kwt_embed] [--work DIR (the exports; replaced each run)]

Made for kwt's `--embed conv` (a convolutional stem before the tokens; README Stage 3) against
the linear embedding. Each width is exported as float TFLite (the int8 gates need a finished
model; the float graph's instruction count depends on the architecture, not on the weights),
its accounting read from the manifest, and one inference counted under qemu-user (LiteRT, one
thread) on each target's core; the count becomes an *estimated* latency with the target's clock
and the calibrated instructions-per-cycle factor (`edgekws.estimate`). Counts repeat run to run
within a few thousand instructions, so this runs beside training without changing its figures.
Writes benchmarks/results/embed_cost{tag}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from edgekws.errors import EdgeKWSError

    try:
        run()
    except EdgeKWSError as err:  # a bad target, checkpoint or width: one line, no traceback
        raise SystemExit(f"error: {err}")


def run() -> None:
    from edgekws.estimate import build_plugin, count_instructions, estimate_ms
    from edgekws.export import export_subnet
    from edgekws.fileio import write_text_atomic
    from edgekws.manifest import load_manifest
    from edgekws.targets import get_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="LABEL=CHECKPOINT, the first one the baseline")
    ap.add_argument("--widths", type=float, nargs="*", default=[0.25, 0.5, 1.0])
    ap.add_argument("--targets", nargs="*", default=["pi3", "pi5"])
    ap.add_argument("--tag", default="")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekws-embed-cost"))
    args = ap.parse_args()
    runs = [tuple(a.split("=", 1)) for a in args.checkpoints]
    if any(len(r) != 2 for r in runs):
        raise SystemExit("each checkpoint is LABEL=PATH")
    targets = [(name, get_target(name)) for name in args.targets]
    build_plugin()

    rows = []
    for label, ckpt in runs:
        for w in args.widths:
            folder = export_subnet(width=w, checkpoint=Path(ckpt), out=args.work / f"{label}_w{w:g}", force=True,
                                   formats=("tflite",), precisions=("float",)).out_dir
            acc = load_manifest(folder)["accounting"]
            row = {"label": label, "checkpoint": ckpt, "width": w, "name": folder.name, "params": acc["params"],
                   "macs": acc["macs"], "peak_activation_elems": acc.get("peak_activation_elems"), "targets": {}}
            for name, t in targets:
                start = time.perf_counter()
                n = count_instructions(folder / "model_float.tflite", "litert", t.cpu)["instructions"]
                row["targets"][name] = {"cpu": t.cpu, "clock_ghz": t.clock_ghz, "instructions": n,
                                          "estimated_ms": round(estimate_ms(n, t.cpu, t.clock_ghz), 3),
                                          "count_seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            est = "  ".join(f"{k} {v['estimated_ms']:.2f} ms ({v['instructions']:,} instr)" for k, v in row["targets"].items())
            print(f"{label:8s} w{w:<5g} {row['params']:>8,} params {row['macs']:>12,} MACs  {est}", flush=True)

    base = {r["width"]: r for r in rows if r["label"] == runs[0][0]}
    lines = [f"# Deployed cost by architecture (float TFLite, LiteRT, 1 thread; latency *estimated* from qemu-user "
             f"instruction counts)", "", f"Baseline: `{runs[0][0]}` ({runs[0][1]})", "",
             "| run | width | subnet | params | MACs | " + " | ".join(f"{name} est. ms (× baseline)" for name, _ in targets) + " |",
             "|---|---|---|---:|---:|" + "---:|" * len(targets)]
    for r in rows:
        b = base.get(r["width"])
        cells = []
        for name, _ in targets:
            ms = r["targets"][name]["estimated_ms"]
            ratio = f" ({ms / b['targets'][name]['estimated_ms']:.2f}×)" if b and b is not r else ""
            cells.append(f"{ms:.3f}{ratio}")
        lines.append(f"| {r['label']} | {r['width']:g} | {r['name']} | {r['params']:,} | {r['macs']:,} | " + " | ".join(cells) + " |")
    doc = {"runs": [{"label": lb, "checkpoint": c} for lb, c in runs], "targets": args.targets, "rows": rows}
    write_text_atomic(RESULTS / f"embed_cost{args.tag}.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(RESULTS / f"embed_cost{args.tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
