"""Where int8 stands for a supernet still in training: export widths of a training `.state`
through every format under the default gates, every figure kept whether they pass or not.

    python benchmarks/int8_gates_in_training.py --state /root/work/kwt_150.pt.state --family kwt

Why: a family's int8 gate (top-1 agreement ≥ 0.98, drop ≤ 1 pt on the pinned pack) decides
whether it can ship int8 at all, and an untrained model says nothing about it (seeded kwt weights
agree 0.54–0.62 in TFLite int8, `results/lowering_vs_litert_torch.md`). The state's weights are
wrapped in a checkpoint with the shipped supernet's features, labels and calibration examples
(the same 512 training clips, the same corpus) and exported with `export_subnet` under the
default gates — ONNX trying its int8 schemes in order, as `edgekws export` does — and every
check's value and scheme tried is kept, passed or not. Writes benchmarks/results/int8_gates_<family>_epoch<N>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", type=Path, required=True, help="a training .state file (edgekws train writes one per epoch)")
    ap.add_argument("--family", default="kwt")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    args = ap.parse_args()

    import torch

    from edgekws.assets import DEFAULT_CHECKPOINT
    from edgekws.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from edgekws.export import GateError, export_subnet
    from edgekws.models import get_family

    state = torch.load(args.state, map_location="cpu", weights_only=True)
    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    fam = get_family(args.family)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ck_path = Path(tmp) / "state.pt"
        save_checkpoint(ck_path, Checkpoint(args.family, fam.space, shipped.features, shipped.labels, state["model"],
                                            calibration=shipped.calibration))
        for w in args.widths:
            # The default gates, as `edgekws export` runs them (ONNX tries its int8 schemes until
            # one passes); a failed export still reports every check and scheme tried.
            try:
                res = export_subnet(width=w, checkpoint=ck_path, out=Path(tmp) / f"w{w}")
                checks, attempts, passed = res.checks, res.manifest["quantization"]["onnx"]["attempts"], True
                name, ref = res.spec.name, res.manifest["validation"]["pytorch_float_accuracy"]
            except GateError as exc:
                checks, attempts, passed = exc.checks, exc.attempts, False
                name, ref = fam.space.uniform(w).name, exc.pytorch_accuracy
            row = {"width": w, "subnet": name, "pytorch_float_accuracy": round(ref, 4), "passed_default_gates": passed,
                   "checks": {f"{c.artefact} {c.metric}": {"value": c.value, "passed": c.passed, "note": c.note}
                              for c in checks},
                   "onnx_int8_schemes_tried": attempts}
            rows.append(row)
            print(json.dumps(row), flush=True)
    epoch = int(state["epoch"])
    out = {"benchmark": "int8_gates_in_training", "family": args.family, "epoch": epoch,
           "epochs_planned": state["config"].get("epochs"), "date": time.strftime("%Y-%m-%d"),
           "pack_examples": 1000, "default_gates": {"int8_agreement": 0.98, "int8_max_drop_pt": 1.0}, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"int8_gates_{args.family}_epoch{epoch}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
