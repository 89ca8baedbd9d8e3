"""Do the exported models give the same answers on 64-bit Arm as on this x86 host?

Every width of the shipped supernet, all four artefacts (TFLite/ONNX × float/int8), run by the
on-board runner on the first N examples of the pinned test pack: once on this host, then on
emulated Cortex-A53 (Pi 3 / Zero 2 W), Cortex-A72 (Pi 4) and Cortex-A76 (Pi 5) under qemu-user
with Debian 12's stack (the host's runtime versions), and on Cortex-A53 with Debian 11's (Python
3.9, numpy 1.26, tflite-runtime 2.13, onnxruntime 1.19) — `make arm` first. The CPU model sets
the instruction-set features the runtimes see (A76 reports dot-product, A53/A72 do not), so this
is the check a firmware team would otherwise need several boards for. Emulated latency is
recorded only to show it is not meaningful.

    python benchmarks/arm_parity.py [--examples 1000] [--devices qemu-aarch64:cortex-a53,...]

Writes benchmarks/results/arm_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekws.assets import DEFAULT_CHECKPOINT, load_pack
from edgekws.artefacts import PRECISION_FILE
from edgekws.artefacts import RUNTIME_FORMAT as FORMAT
from edgekws.bench import compare_outputs, int8_step
from edgekws.devices import make_device
from edgekws.checkpoint import load_checkpoint
from edgekws.export import export_subnet
from edgekws.fileio import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
WIDTHS = (0.25, 0.5, 0.75, 1.0)


def run(device, model: Path, inputs: Path, runtime: str) -> dict:
    t0 = time.perf_counter()
    out = device.run(["--model", str(model), "--runtime", runtime, "--runs", "20", "--warmup", "2", "--input", str(inputs),
                      "--all-inputs"], timeout=3600)
    r = out["results"][0]
    if not r.get("ok"):
        raise SystemExit(f"{device.name} {model}: {r.get('error')}")
    r["wall_s"] = round(time.perf_counter() - t0, 1)
    r["machine"] = out["device"]["machine"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--devices", default="qemu-aarch64:cortex-a53,qemu-aarch64:cortex-a72,qemu-aarch64:cortex-a76,"
                                          "qemu-aarch64:cortex-a53@bullseye")
    ap.add_argument("--out", type=Path, default=RESULTS / "arm_parity")
    args = ap.parse_args()

    pack = load_pack()
    n = min(args.examples, len(pack.targets))
    space = load_checkpoint(DEFAULT_CHECKPOINT).space
    local = make_device("local")
    arms = [make_device(d) for d in args.devices.split(",")]
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "pack.npy"
        np.save(inputs, pack.features[:n].astype(np.float32))
        for width in WIDTHS:
            folder = export_subnet(spec=space.uniform(width), out=Path(tmp), force=True).out_dir
            manifest = json.loads((folder / "manifest.json").read_text())
            for (runtime, precision), fname in PRECISION_FILE.items():
                ref = run(local, folder / fname, inputs, runtime)
                step = int8_step(manifest, runtime, precision)
                for dev in arms:
                    r = run(dev, folder / fname, inputs, runtime)
                    arm = np.asarray(r["outputs"], dtype=np.float64)
                    cmp = compare_outputs(arm, ref["outputs"], step)
                    row = {
                        "width": width, "model": manifest["name"], "macs": manifest["accounting"]["macs"],
                        "artefact": f"{FORMAT[runtime]} {precision}", "device": dev.name, "cpu": dev.cpu,
                        "release": dev.release, "runtime": r["runtime"], "machine": r["machine"], "examples": n,
                        **{k: cmp[k] for k in ("top1_agree", "outputs_identical", "max_abs_diff", "max_int8_steps")},
                        "accuracy_x86": round(float((np.argmax(ref["outputs"], 1) == pack.targets[:n]).mean() * 100), 2),
                        "accuracy_arm": round(float((arm.argmax(1) == pack.targets[:n]).mean() * 100), 2),
                        "median_ms_x86": ref["latency_ms"]["median"], "median_ms_emulated": r["latency_ms"]["median"],
                        "wall_s_emulated": r["wall_s"],
                    }
                    rows.append(row)
                    print(f"w{width} {row['artefact']:12s} {dev.name:32s} top-1 {row['top1_agree']}/{n}, identical outputs "
                          f"{row['outputs_identical']}/{n}, max diff {row['max_abs_diff']:.3g}"
                          + (f" ({row['max_int8_steps']} int8 steps)" if precision == "int8" else "")
                          + f", acc x86 {row['accuracy_x86']} / arm {row['accuracy_arm']} %", flush=True)
    summary = {
        "examples": n, "devices": [d.name for d in arms], "rows": rows, "seconds": round(time.perf_counter() - t_start, 1),
        "int8_top1_identical_everywhere": all(r["top1_agree"] == n for r in rows if r["artefact"].endswith("int8")),
        "float_top1_identical_everywhere": all(r["top1_agree"] == n for r in rows if r["artefact"].endswith("float")),
        "sysroots": {d.release: json.loads((d.sysroot / "sysroot.json").read_text()) for d in arms},
        "note": "latency under qemu-user is not meaningful (instruction translation); recorded only to show it",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    lines = [f"# Arm parity: {n} pinned test examples, x86 host vs emulated aarch64\n",
             "| width | artefact | device | top-1 = x86 | identical outputs | max diff | int8 steps | acc x86 | acc arm |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['width']} | {r['artefact']} | {r['device']} | {r['top1_agree']}/{n} | {r['outputs_identical']}/{n} | "
                     f"{r['max_abs_diff']:.3g} | {r['max_int8_steps'] if r['max_int8_steps'] is not None else '–'} | "
                     f"{r['accuracy_x86']} | {r['accuracy_arm']} |")
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"int8 top-1 identical on every CPU and width: {summary['int8_top1_identical_everywhere']}; "
          f"float: {summary['float_top1_identical_everywhere']} ({summary['seconds']} s) → {args.out}.json")


if __name__ == "__main__":
    main()
