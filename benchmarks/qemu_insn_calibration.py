"""Instruction counts under qemu-user (the estimate behind latency on tiers without a board):
how stable a count is run to run, what each CPU model's kernels cost, and the Cortex-A53
instructions-per-cycle factor derived from the published MLPerf Tiny DS-CNN figure.

    python benchmarks/qemu_insn_calibration.py [--repeats 3] [--widths 0.25 1.0]

Exports the untrained `dscnn_mlperf` reference and the shipped supernet's widths (cached under
--work), counts one inference of each (int8 and float, LiteRT, one thread) on cortex-a53,
cortex-a72 and cortex-a76 `--repeats` times, and writes
benchmarks/results/qemu_insn_calibration.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CPUS = ("cortex-a53", "cortex-a72", "cortex-a76")


def main() -> None:
    from edgekws.estimate import A53_REFERENCE, build_plugin, count_instructions
    from edgekws.export import export_subnet
    from edgekws.manifest import load_manifest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", type=float, nargs="*", default=[0.25, 1.0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekws-insn-calibration"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    build_plugin()

    def folder_for(tag: str, **kw) -> Path:
        found = next(iter(sorted((args.work / tag).glob("*/manifest.json"))), None)
        return found.parent if found else export_subnet(out=args.work / tag, force=True, **kw).out_dir

    models = [("dscnn_mlperf", folder_for("mlperf", family="dscnn_mlperf"))]
    models += [(f"supernet w{w:g}", folder_for(f"w{w:g}", width=w)) for w in args.widths]
    rows = []
    for label, folder in models:
        macs = load_manifest(folder)["accounting"]["macs"]
        for precision in ("int8", "float"):
            for cpu in CPUS:
                t = time.perf_counter()
                counts = [count_instructions(folder / f"model_{precision}.tflite", "litert", cpu)["instructions"]
                          for _ in range(args.repeats)]
                med = statistics.median(counts)
                rows.append({"model": label, "name": folder.name, "precision": precision, "cpu": cpu, "macs": macs,
                             "instructions": counts, "median": med,
                             "spread_pct": round(100 * (max(counts) - min(counts)) / med, 4),
                             "instructions_per_mac": round(med / macs, 3),
                             "seconds_per_count": round((time.perf_counter() - t) / args.repeats, 1)})
                print(f"{label:16s} {precision:5s} {cpu:10s} {med:>12,.0f} instr  spread {rows[-1]['spread_pct']:.4f} %  "
                      f"{rows[-1]['instructions_per_mac']:.3f}/MAC", flush=True)
    ref = next(r for r in rows if r["model"] == "dscnn_mlperf" and r["precision"] == "int8" and r["cpu"] == "cortex-a53")
    cycles = A53_REFERENCE["ms"] * 1e-3 * A53_REFERENCE["clock_ghz"] * 1e9
    doc = {"reference": A53_REFERENCE, "reference_cycles": cycles, "a53_instructions": ref["median"],
           "a53_ipc": round(ref["median"] / cycles, 3), "repeats": args.repeats, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "qemu_insn_calibration.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Instructions per inference under qemu-user (LiteRT, 1 thread)", "",
             f"A53 factor: {ref['median']:,.0f} instructions for the MLPerf DS-CNN int8 / "
             f"{cycles:,.0f} cycles ({A53_REFERENCE['source']}) = **{doc['a53_ipc']} instructions per cycle**.", "",
             "| model | precision | CPU | MACs | instructions (median) | spread % | instr/MAC |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['precision']} | {r['cpu']} | {r['macs']:,} | {r['median']:,.0f} | {r['spread_pct']} | "
              f"{r['instructions_per_mac']} |" for r in rows]
    (RESULTS / "qemu_insn_calibration.md").write_text("\n".join(lines) + "\n")
    print(f"A53 instructions per cycle: {doc['a53_ipc']}")


if __name__ == "__main__":
    main()
