"""Does the BN calibration set cost the narrow subnets? Test accuracy per calibration set.

    python benchmarks/bn_calibration.py --data-dir DIR CKPT [CKPT ...] [--threads 1]

Every test figure in train_once, finetune and the export gates recalibrates a subnet's BatchNorm
statistics on the checkpoint's 512 pinned training examples (clean features). A hypothesis for
the supernet's narrow-width gap to its twins is that 512 examples estimate a 16-channel BN's
statistics badly. For each uniform width of each checkpoint (or its one spec), this scores the
subnet with BN as stored and recalibrated on: the pinned 512, the first 2,048, 4,096 drawn at
random (seed 0) and the whole training split. Writes benchmarks/results/bn_calibration.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import torch

    from edgekws.checkpoint import load_checkpoint
    from edgekws.data import SpeechCommands, load_split
    from edgekws.fileio import write_json_atomic
    from edgekws.train import CALIBRATION_EXAMPLES, evaluate_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for path in args.checkpoints:
        ck = load_checkpoint(path)
        ds = SpeechCommands.open(args.data_dir, str(ck.train_config.get("protocol", "12")),
                                 int(ck.train_config.get("seed", 0)))
        train, test = (load_split(ds, s, ck.features, args.cache_dir) for s in ("train", "testing"))
        pick = np.sort(np.random.default_rng(0).choice(len(train.features), min(4096, len(train.features)), replace=False))
        sets = {f"pinned_{CALIBRATION_EXAMPLES}": np.array(train.features[:CALIBRATION_EXAMPLES], np.float32),
                "first_2048": np.array(train.features[:2048], np.float32),
                "random_4096": np.array(train.features[pick], np.float32),
                f"all_{len(train.features)}": np.array(train.features, np.float32)}
        model = ck.supernet()
        specs = ({"one spec": ck.only_spec} if ck.only_spec is not None
                 else {f"width {m:g}": s for m, s in ck.space.width_multiplier_specs().items()})
        for label, spec in specs.items():
            row = {"checkpoint": path.name, "subnet": label, "spec": spec.name,
                   "as_stored": evaluate_spec(model, spec, test)[0],
                   **{name: evaluate_spec(model, spec, test, feats)[0] for name, feats in sets.items()}}
            rows.append(row)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out = {"benchmark": "bn_calibration", "date": time.strftime("%Y-%m-%d"), "test_examples": len(test.targets),
           "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / "bn_calibration.json"
    write_json_atomic(dest, out)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
