"""Recipe ablation: each change to the training recipe, alone, against one base, same epochs.

    python benchmarks/recipe_ablation.py --data-dir DIR [--epochs 6] [--family dscnn] [--only NAME ...]

Every variant trains a supernet from the same seed with the base recipe plus one change, and is
scored on the voice-disjoint test split at width 0.25 and 1.0 (BN recalibrated, as deployed)
and on mixed-width specs (the mean over 8 fixed random per-stage specs: what a per-tier search
will pick from). Checkpoints are kept under --work, so an interrupted ablation resumes where it
stopped. Writes benchmarks/results/recipe_ablation_<family>_<epochs>ep.{json,md} with
Δ (pt) against the base for each change.

Short runs rank changes cheaply; they do not prove a change helps at 150 epochs — the README says
which changes the default recipe kept and on what evidence.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# One change each, applied to the base recipe.
VARIANTS = {
    "base": {},
    "uniform_sampling": {"sampling": "uniform"},
    "num_random=1": {"num_random": 1},
    "spec_augment_largest_only": {"spec_augment_scope": "largest"},
    "no_decay_on_norms_biases": {"decay_weights_only": True},
    "kd=alpha": {"kd": "alpha"},
    "channel_augment": {"channel_augment": True},
    "feature_bank_K=2": {"feature_variants": 2},  # each augmented variant reused epochs/2 times
    "small_label_weight=0.5": {"small_label_weight": 0.5},
    "small_width_bias=1": {"small_width_bias": 1.0},
    "num_random=3": {"num_random": 3},
    "num_random=4": {"num_random": 4},
    "small_label_weight=0.75": {"small_label_weight": 0.75},
    "kd_only_small_subnets": {"small_label_weight": 0.0},
    "kd_ladder": {"kd_ladder": True},  # each width anchor taught by the next wider uniform subnet
    "label_smoothing=0": {"label_smoothing": 0.0},  # hard labels unsmoothed (tiny models underfit)
    # per-clip input normalisation inside the model (`--input-norm`; measured on an unheard engine
    # with `edgekws loeo`, README Stage 3)
    "input_norm=band_mean": {"input_norm": "band_mean"},
    # each engine an equal share of the epoch (`--engine-balance 1`; the training split is 68 % espeak-ng)
    "engine_balance=1": {"engine_balance": 1.0},
}


def mixed_specs(space, n: int = 8):
    import numpy as np

    rng = np.random.default_rng(1234)
    return [space.sample(rng) for _ in range(n)]


def score(ckpt: Path, data_dir: Path, cache_dir: Path | None) -> dict:
    import numpy as np

    from edgekws.checkpoint import load_checkpoint
    from edgekws.data import SpeechCommands, load_split
    from edgekws.train import evaluate_spec

    ck = load_checkpoint(ckpt)
    ds = SpeechCommands.open(data_dir, "12", 0)
    test = load_split(ds, "testing", ck.features, cache_dir)
    model = ck.supernet()
    calib = ck.calibration_features()
    mixed = [evaluate_spec(model, s, test, calib)[0] for s in mixed_specs(ck.space)]
    t = ck.metrics["test"]
    return {"w0.25": t["width_0.25"]["accuracy"], "w1.0": t["width_1"]["accuracy"],
            "w0.5": t["width_0.5"]["accuracy"], "w0.75": t["width_0.75"]["accuracy"],
            "mixed_mean": round(float(np.mean(mixed)), 4),
            "train_seconds": ck.metrics["train_seconds"], "train_cpu_seconds": ck.metrics["train_cpu_seconds"]}


def main() -> None:
    from edgekws.models import get_family
    from edgekws.train import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--family", default="dscnn")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekws-ablation"))
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--tag", default="", help="suffix of the results file names (a second round at the same epochs)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    names = args.only or list(VARIANTS)
    if "base" not in names:
        names = ["base", *names]
    base_cfg = TrainConfig.for_family(args.family, epochs=args.epochs)
    rows = {}
    for name in names:
        change = dict(VARIANTS[name])
        cfg = replace(base_cfg, **change)
        ckpt = args.work / f"{args.family}_{name}_{args.epochs}ep.pt"
        if not ckpt.exists():
            train(args.data_dir, ckpt, cfg, cache_dir=args.cache_dir, threads=args.threads, resume=True,
                  log=lambda m: print("   ", m, flush=True))
        rows[name] = {"change": change, **score(ckpt, args.data_dir, args.cache_dir)}
        r, b = rows[name], rows["base"]
        print(f"{name:28s} w0.25 {100 * r['w0.25']:.2f} ({100 * (r['w0.25'] - b['w0.25']):+.2f})  "
              f"w1.0 {100 * r['w1.0']:.2f} ({100 * (r['w1.0'] - b['w1.0']):+.2f})  "
              f"mixed {100 * r['mixed_mean']:.2f} ({100 * (r['mixed_mean'] - b['mixed_mean']):+.2f})  "
              f"{r['train_seconds']:.0f} s", flush=True)
    b = rows["base"]
    for r in rows.values():
        for k in ("w0.25", "w1.0", "mixed_mean"):
            r[f"delta_{k}_pt"] = round(100 * (r[k] - b[k]), 2)
    result = {"benchmark": "recipe_ablation", "family": args.family, "epochs": args.epochs,
              "base": base_cfg.to_dict(), "rows": rows, "date": time.strftime("%Y-%m-%d"),
              "mixed_specs": [s.name for s in mixed_specs(get_family(args.family).space)]}
    lines = ["| change | width 0.25 | Δ pt | width 1.0 | Δ pt | mixed specs | Δ pt | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        lines.append(f"| {name} | {100 * r['w0.25']:.2f} % | {r['delta_w0.25_pt']:+.2f} | {100 * r['w1.0']:.2f} % | "
                     f"{r['delta_w1.0_pt']:+.2f} | {100 * r['mixed_mean']:.2f} % | {r['delta_mixed_mean_pt']:+.2f} | "
                     f"{r['train_seconds']:.0f} |")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"recipe_ablation_{args.family}_{args.epochs}ep{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
