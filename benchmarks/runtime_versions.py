"""Is an int8 difference the architecture's or the runtime version's?

Runs one exported int8 TFLite model on the pinned pack with several runner stacks — this host's,
other local Pythons (e.g. a venv with tflite-runtime 2.13 and numpy 1.x) and emulated aarch64
devices — and compares every pair: top-1 agreement, rows with identical outputs, largest
difference in int8 steps.

    python3.9 -m venv /tmp/venv39 && /tmp/venv39/bin/pip install numpy==1.26.4 tflite-runtime==2.13.0
    python benchmarks/runtime_versions.py --width 0.25 --python /tmp/venv39/bin/python \
        --device qemu-aarch64:cortex-a53@bullseye --device qemu-aarch64:cortex-a53

Writes benchmarks/results/runtime_versions.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekws.assets import DEFAULT_CHECKPOINT, load_pack
from edgekws.bench import compare_outputs
from edgekws.devices import make_device
from edgekws.devices.local import LocalDevice
from edgekws.checkpoint import load_checkpoint
from edgekws.export import export_subnet
from edgekws.fileio import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--python", action="append", default=[], help="another local Python with a runtime (repeatable)")
    ap.add_argument("--device", action="append", default=[], help="an emulated device (repeatable)")
    ap.add_argument("--out", type=Path, default=RESULTS / "runtime_versions.json")
    args = ap.parse_args()

    pack = load_pack()
    stacks = [LocalDevice("local")] + [LocalDevice(f"local:{p}", python=p) for p in args.python]
    stacks += [make_device(d) for d in args.device]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "pack.npy"
        np.save(inputs, pack.features.astype(np.float32))
        spec = load_checkpoint(DEFAULT_CHECKPOINT).space.uniform(args.width)
        folder = export_subnet(spec=spec, out=Path(tmp), force=True).out_dir
        outputs, who = {}, {}
        for dev in stacks:
            t0 = time.perf_counter()
            out = dev.run(["--model", str(folder / "model_int8.tflite"), "--runs", "2", "--warmup", "0",
                           "--input", str(inputs), "--all-inputs"], timeout=3600)
            r = out["results"][0]
            if not r.get("ok"):
                raise SystemExit(f"{dev.name}: {r.get('error')}")
            d = out["device"]
            runtime = "ai_edge_litert " + d["ai_edge_litert"] if "ai_edge_litert" in d else "tflite_runtime " + d.get("tflite_runtime", "?")
            who[dev.name] = f"{d['machine']}, Python {d['python']}, numpy {d['numpy']}, {runtime}"
            outputs[dev.name] = np.asarray(r["outputs"], dtype=np.int64)
            print(f"{dev.name}: {who[dev.name]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    pairs = []
    for a, b in itertools.combinations(outputs, 2):
        x, y = outputs[a], outputs[b]
        cmp = compare_outputs(x, y, 1.0)  # raw int8 outputs: one step is 1
        pair = {"a": a, "b": b, "a_stack": who[a], "b_stack": who[b], "examples": len(x),
                **{k: cmp[k] for k in ("top1_agree", "outputs_identical", "max_int8_steps")},
                "accuracy_a": round(float((x.argmax(1) == pack.targets).mean() * 100), 2),
                "accuracy_b": round(float((y.argmax(1) == pack.targets).mean() * 100), 2)}
        pairs.append(pair)
        print(f"{who[a]}  vs  {who[b]}: top-1 {pair['top1_agree']}/{len(x)}, identical rows {pair['outputs_identical']}, "
              f"max {pair['max_int8_steps']} int8 steps")
    write_text_atomic(args.out, json.dumps({"model": spec.name, "pairs": pairs}, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
