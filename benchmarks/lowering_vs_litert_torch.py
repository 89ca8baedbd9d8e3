"""The TFLite lowering against a kept converter library, measured: edgekws's own lowering
(`edgekws/export/lowering.py`, TFLiteConverter) vs litert-torch (torch.export → LiteRT).

    python benchmarks/lowering_vs_litert_torch.py --litert-python /tmp/lt/bin/python

litert-torch lives in a separate venv (`python3 -m venv /tmp/lt && /tmp/lt/bin/pip install
litert-torch==0.10.0 torch==2.13.0`): it is not a dependency of edgekws, and this script measures
whether it should be. Both sides convert the same extracted, BN-folded subnets of the shipped dscnn
and kwt supernets (widths 0.25 and 1.0), as `edgekws export` ships them; every
.tflite is then run by the same LiteRT interpreter here on the pinned test pack. Per model and
converter: conversion seconds (one process each, median of `--repeats`), file size, operator
counts (TRANSPOSE in particular), float max |logit − PyTorch|, int8 top-1 agreement with float
PyTorch and its accuracy drop. litert-torch's int8 is its PT2E static quantizer (symmetric,
per-channel weights), calibrated on the same examples as ours (each checkpoint's first 200). Writes
benchmarks/results/lowering_vs_litert_torch.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

MODELS = [("dscnn", 0.25), ("dscnn", 1.0), ("kwt", 0.25), ("kwt", 1.0)]

# Runs in the litert-torch venv (edgekws importable from the repository): convert one model.
LITERT_SIDE = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from benchmarks.lowering_vs_litert_torch import static_net
family, width, precision, out, calib_path = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
net = static_net(family, width)
sample = (torch.zeros(1, 49, 40),)
t0 = time.perf_counter()
import litert_torch
if precision == "float":
    model = litert_torch.convert(net, sample)
else:
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    m = torch.export.export(net, sample).module()
    m = prepare_pt2e(m, quantizer)
    for x in np.load(calib_path):
        m(torch.from_numpy(x[None]))
    m = convert_pt2e(m, fold_quantize=False)
    model = litert_torch.convert(m, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
model.export(out)
print(json.dumps({"seconds": time.perf_counter() - t0, "version": litert_torch.__version__}))
"""

OURS_SIDE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from benchmarks.lowering_vs_litert_torch import static_net
family, width, precision, out, calib_path = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
net = static_net(family, width)
t0 = time.perf_counter()
from edgekws.export import tflite_format
data = (tflite_format.convert_float(net, (49, 40)) if precision == "float"
        else tflite_format.convert_int8(net, (49, 40), np.load(calib_path)))
open(out, "wb").write(data)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def static_net(family: str, width: float):
    """The subnet both converters see: the shipped supernet's uniform `width`, exactly as
    `edgekws export` ships it (extracted, BN recalibrated, folded: `extract.deployable_subnet`)."""
    from edgekws.assets import shipped_checkpoint
    from edgekws.checkpoint import load_checkpoint
    from edgekws.extract import deployable_subnet

    ck = load_checkpoint(shipped_checkpoint(family))
    return deployable_subnet(ck, ck.space.uniform(width))[0]


def _ops(data: bytes) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    return Counter(op["op_name"] for op in it._get_ops_details())


def _convert(python: str, side: str, family: str, width: float, precision: str, calib: Path, work: Path) -> tuple[bytes, dict]:
    out = work / f"{family}_{width}_{precision}_{'lt' if side is LITERT_SIDE else 'ours'}.tflite"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([python, "-c", side, str(ROOT), family, str(width), precision, str(out), str(calib)],
                       capture_output=True, text=True, env=env, cwd=work)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return b"", {"error": tail[:300]}
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    return out.read_bytes(), rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--litert-python", required=True, help="python of a venv with litert-torch installed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=[f"{f}@{w}" for f, w in MODELS],
                    help="FAMILY@WIDTH of shipped supernets (default: %(default)s)")
    args = ap.parse_args()
    try:
        models = [(m.split("@")[0], float(m.split("@")[1])) for m in args.models]
    except (IndexError, ValueError):
        ap.error(f"--models takes FAMILY@WIDTH, e.g. kwt@0.25 (got {args.models})")

    import numpy as np
    import torch

    from edgekws.assets import DEFAULT_PACK, load_pack, shipped_checkpoint
    from edgekws.errors import EdgeKWSError

    for family, _ in models:  # a family that ships no supernet: one line before any conversion
        try:
            shipped_checkpoint(family)
        except EdgeKWSError as err:
            raise SystemExit(f"error: {err}")
    from edgekws.checkpoint import load_checkpoint
    from edgekws.export.runtimes import TFLiteRunner
    from edgekws.targets import host_facts

    pack = load_pack(DEFAULT_PACK)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for family, width in models:
            calib = work / f"calib_{family}.npy"
            if not calib.exists():
                np.save(calib, load_checkpoint(shipped_checkpoint(family)).calibration_features(200))
            net = static_net(family, width)
            with torch.no_grad():
                ref = net(torch.from_numpy(pack.features)).numpy()
            for precision in ("float", "int8"):
                for name, python, side in (("edgekws lowering", sys.executable, OURS_SIDE),
                                           ("litert-torch", args.litert_python, LITERT_SIDE)):
                    times, data, rec = [], b"", {}
                    for _ in range(args.repeats):
                        data, rec = _convert(python, side, family, width, precision, calib, work)
                        if "error" in rec:
                            break
                        times.append(rec["seconds"])
                    row = {"model": f"{family}@{width}", "precision": precision, "converter": name}
                    if "error" in rec:
                        row["error"] = rec["error"]
                    else:
                        y = TFLiteRunner(data)(pack.features)
                        ops = _ops(data)
                        row.update(convert_s=round(statistics.median(times), 2), kb=round(len(data) / 1024, 1),
                                   ops=sum(ops.values()), transposes=ops.get("TRANSPOSE", 0),
                                   op_types=dict(sorted(ops.items())))
                        if precision == "float":
                            row["max_abs_diff"] = float(np.abs(y - ref).max())
                        else:
                            row["agreement"] = round(float((y.argmax(1) == ref.argmax(1)).mean()), 4)
                            row["drop_pt"] = round(100 * float((ref.argmax(1) == pack.targets).mean()
                                                               - (y.argmax(1) == pack.targets).mean()), 2)
                        if "version" in rec:
                            row["version"] = rec["version"]
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "op_types"}), flush=True)
    out = {"benchmark": "lowering_vs_litert_torch", "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(),
           "pack_examples": len(pack.targets), "repeats": args.repeats,
           "note": "conversion seconds exclude interpreter start and imports done before the timer (TF import "
                   "is inside ours); both families are the shipped supernets' subnets as exported",
           "cpu": host_facts()["cpu"], "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lowering_vs_litert_torch.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["| model | precision | converter | convert s | KB | ops | TRANSPOSE | float max diff | int8 agreement | int8 drop pt |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['precision']} | {r['converter']} | failed: {r['error'][:80]} | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['precision']} | {r['converter']} | {r['convert_s']} | {r['kb']} | {r['ops']} | "
                     f"{r['transposes']} | {r.get('max_abs_diff', ''):.2g} | | |" if r["precision"] == "float" else
                     f"| {r['model']} | {r['precision']} | {r['converter']} | {r['convert_s']} | {r['kb']} | {r['ops']} | "
                     f"{r['transposes']} | | {r['agreement']} | {r['drop_pt']} |")
    (RESULTS / "lowering_vs_litert_torch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
