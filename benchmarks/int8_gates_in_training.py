"""Where int8 stands for a supernet still in training: export widths of a training `.state`
through every format with the gates recorded, not enforced.

    python benchmarks/int8_gates_in_training.py --state /root/work/kwt_150.pt.state --family kwt

Why: a family's int8 gate (top-1 agreement ≥ 0.98, drop ≤ 1 pt on the pinned pack) decides
whether it can ship int8 at all, and an untrained model says nothing about it (seeded kwt weights
agree 0.54–0.62 in TFLite int8, `results/lowering_vs_litert_torch.md`). The state's weights are
wrapped in a checkpoint with the shipped supernet's features, labels and calibration examples
(the same 512 training clips, the same corpus), exported with `export_subnet` and every check's
value kept. Writes benchmarks/results/int8_gates_<family>_epoch<N>.json.
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
    from edgekws.export import export_subnet
    from edgekws.export.formats import Thresholds
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
            res = export_subnet(width=w, checkpoint=ck_path, out=Path(tmp) / f"w{w}",
                                thresholds=Thresholds(int8_agreement=0.0, int8_max_drop_pt=100.0))
            v = res.manifest["validation"]
            row = {"width": w, "subnet": res.manifest["name"] if "name" in res.manifest else None,
                   "pytorch_float_accuracy": v["pytorch_float_accuracy"],
                   "checks": {f"{c['artefact']} {c['metric']}": c["value"] for c in v["checks"]},
                   "would_pass_default_gates": all(
                       (c["value"] >= 0.98 if c["metric"] == "top-1 agreement" else
                        c["value"] <= 1.0 if c["metric"].startswith("accuracy drop") else c["passed"]) for c in v["checks"])}
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
