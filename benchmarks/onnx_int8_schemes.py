"""What the ONNX int8 schemes cost at run time: float against a whole-graph scheme and its
compute-only variant (edgekws/export/onnx_format.py), one subnet of a shipped supernet.

    python benchmarks/onnx_int8_schemes.py [--supernet kwt] [--width 0.25] [--rounds 7] [--runs 200]

Each model runs in ONNX Runtime on one thread at batch 1 (what a keyword spotter does per
window). The three sessions take turns, `--rounds` rounds of `--runs` timed runs after 20
untimed ones, so a machine whose speed drifts moves all three alike; the figure is the median of
the round medians, and the ratios are taken round by round. Also: file size, and top-1 agreement
with the float model and accuracy on the pinned test pack (what the export gates check).
Writes results/onnx_int8_schemes_<supernet>_w<width>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import onnxruntime as ort

    from edgekws.assets import DEFAULT_PACK, load_pack, shipped_checkpoint
    from edgekws.checkpoint import load_checkpoint
    from edgekws.export.onnx_format import QUANT_CANDIDATES, export_float, quantize_int8
    from edgekws.extract import deployable_subnet
    from edgekws.fileio import write_text_atomic
    from edgekws.targets import host_facts

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", default="kwt")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--scheme", default="s8s8", help="the whole-graph scheme; its _compute_only variant is the third")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    by_name = {c.name: c for c in QUANT_CANDIDATES}
    if args.scheme not in by_name or by_name[args.scheme].op_types:
        raise SystemExit(f"--scheme must be a whole-graph scheme: {', '.join(n for n, c in by_name.items() if not c.op_types)}")

    ck = load_checkpoint(shipped_checkpoint(args.supernet))
    spec = ck.pick(None, args.width, None)
    net, _ = deployable_subnet(ck, spec)  # exactly what `edgekws export` quantizes
    calib = ck.calibration_features()[:200]  # what export calibrates on by default
    float_onnx = export_float(net, ck.features.shape)
    with tempfile.TemporaryDirectory() as work:
        models = {"float": float_onnx,
                  args.scheme: quantize_int8(float_onnx, calib, by_name[args.scheme], Path(work)),
                  f"{args.scheme}_compute_only": quantize_int8(float_onnx, calib, by_name[f"{args.scheme}_compute_only"],
                                                               Path(work))}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sessions = {k: ort.InferenceSession(v, so, providers=["CPUExecutionProvider"]) for k, v in models.items()}
    pack = load_pack(DEFAULT_PACK)
    outputs = {k: s.run(None, {"features": pack.features.astype(np.float32)})[0] for k, s in sessions.items()}
    x = pack.features[:1].astype(np.float32)
    ms = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for k, s in sessions.items():
            for _ in range(20):
                s.run(None, {"features": x})
            t = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                s.run(None, {"features": x})
                t.append(time.perf_counter() - t0)
            ms[k].append(float(np.median(t)) * 1e3)
    ref = outputs["float"].argmax(1)
    rows = []
    for k in sessions:
        ratio = [a / b for a, b in zip(ms[k], ms["float"])]
        rows.append({"model": k, "latency_ms_median": round(float(np.median(ms[k])), 4),
                     "latency_ms_rounds": [round(v, 4) for v in ms[k]],
                     "vs_float_median": round(float(np.median(ratio)), 3), "size_kb": round(len(models[k]) / 1024, 1),
                     "agreement": round(float((outputs[k].argmax(1) == ref).mean()), 4),
                     "accuracy": round(float((outputs[k].argmax(1) == pack.targets).mean()), 4)})
    result = {"benchmark": "onnx_int8_schemes", "supernet": args.supernet, "subnet": spec.name, "width": args.width,
              "threads": 1, "batch": 1, "rounds": args.rounds, "runs": args.runs, "cpu": host_facts()["cpu"],
              "onnxruntime": ort.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    lines = [f"ONNX Runtime {ort.__version__}, 1 thread, batch 1, `{spec.name}`, {host_facts()['cpu']}", "",
             "| model | latency ms (median of rounds) | × float (median of rounds) | size KB | agreement | accuracy |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['latency_ms_median']:.3f} | {r['vs_float_median']:.2f} | {r['size_kb']:.0f} | "
              f"{r['agreement']:.3f} | {100 * r['accuracy']:.1f} % |" for r in rows]
    RESULTS.mkdir(exist_ok=True)
    stem = f"onnx_int8_schemes_{args.supernet}_w{args.width:g}"
    write_text_atomic(RESULTS / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(RESULTS / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
