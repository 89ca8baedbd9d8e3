"""Label-free adaptation to an unheard engine: BatchNorm statistics from its own unlabelled audio.

    python benchmarks/loeo_adapt.py RUN_DIR [--folds 2] [--calib-examples 512] [--seed 0] [--out results/NAME.json]

RUN_DIR is an `edgekws loeo` output folder (`loeo.json`, the checkpoint, `views/heldout`). A device
can record its own audio without labels; BatchNorm's running statistics are the part of a BN model
that such audio can re-estimate (AdaBN, Li et al. 2016: domain shift lives largely in the BN
statistics). Every width is scored on the held-out engine three ways, each subnet extracted and
its BN recalibrated on `--calib-examples` clean examples:

- `training`: on the checkpoint's own calibration set (training clips) — what `loeo` reports;
  this script checks it reproduces `loeo.json`'s held-out figure before it measures anything else;
- `clips`: on the held-out engine's clips of the other folds (clips split at random into
  `--folds` folds, voices shared between folds) — a device that heard its own speakers before;
- `voices`: on the held-out engine's clips of its *other* voices, scored on each voice in turn
  (silence cuts are a group of their own) — the engine is adapted to, the speaker stays unheard.

No label of a held-out clip is used to adapt; labels only score. The in-distribution figure and
the gap come from `loeo.json`. Writes a JSON and a Markdown table (default:
benchmarks/results/loeo_adapt_<engine>.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _score(model, spec, feats: np.ndarray, targets: np.ndarray, calib: np.ndarray) -> np.ndarray:
    """Per-example correctness of `spec`, extracted and BN-recalibrated on `calib`."""
    from types import SimpleNamespace

    from edgekws.train import evaluate_spec

    _, preds = evaluate_spec(model, spec, SimpleNamespace(features=feats, targets=targets), calib)
    return preds == targets


def adapt(run: Path, folds: int, n_calib: int, seed: int, cache_dir: Path | None, log=print) -> dict:
    from edgekws.checkpoint import load_checkpoint
    from edgekws.data import SpeechCommands, clip_column, load_split
    from edgekws.holdout import SILENCE_GROUP

    report = json.loads((run / "loeo.json").read_text())
    ck = load_checkpoint(Path(report["checkpoint"]) if Path(report["checkpoint"]).is_file()
                         else run / Path(report["checkpoint"]).name)
    ds = SpeechCommands.open(run / "views" / "heldout", str(ck.train_config.get("protocol", "12")),
                             int(ck.train_config.get("seed", 0)))
    held = load_split(ds, "testing", ck.features, cache_dir)
    feats, targets = np.asarray(held.features, dtype=np.float32), np.asarray(held.targets)
    voices_of = clip_column(Path(report["corpus"]), "voice")
    groups = np.array([voices_of.get(k, SILENCE_GROUP) for k in held.keys])
    fold_of = np.random.default_rng(seed).permutation(len(targets)) % folds
    model = ck.supernet()
    rng = np.random.default_rng(seed + 1)

    def calib_from(mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return feats[np.sort(rng.choice(idx, size=min(n_calib, len(idx)), replace=False))]

    rows = []
    for r in report["rows"]:
        spec = ck.space.uniform(float(r["width"]))
        base = _score(model, spec, feats, targets, ck.calibration_features())  # as `loeo` scored it
        if round(float(base.mean()), 4) != r["heldout_accuracy"]:
            raise SystemExit(f"width {r['width']}: {base.mean():.4f} on the held-out clips with the training calibration, "
                             f"but loeo.json says {r['heldout_accuracy']}: not the run's checkpoint or clips")
        by_clip = np.zeros(len(targets), dtype=bool)
        for f in range(folds):
            m = fold_of == f
            by_clip[m] = _score(model, spec, feats[m], targets[m], calib_from(~m))
        by_voice = np.zeros(len(targets), dtype=bool)
        for g in sorted(set(groups.tolist())):
            m = groups == g
            by_voice[m] = _score(model, spec, feats[m], targets[m], calib_from(~m))
        ind = r["in_distribution_accuracy"]
        acc = {"training": float(base.mean()), "clips": float(by_clip.mean()), "voices": float(by_voice.mean())}
        row = {"width": r["width"], "name": r["name"], "in_distribution_accuracy": ind,
               "heldout_accuracy": {k: round(v, 4) for k, v in acc.items()},
               "gap_pt": {k: round(100 * (v - ind), 2) for k, v in acc.items()},
               "per_voice": {g: {k: round(float(c[groups == g].mean()), 4)
                                 for k, c in (("training", base), ("clips", by_clip), ("voices", by_voice))}
                             for g in sorted(set(groups.tolist()))}}
        log(f"width {r['width']}: held-out {100 * acc['training']:.2f} % → {100 * acc['clips']:.2f} % (clips) / "
            f"{100 * acc['voices']:.2f} % (other voices); in-distribution {100 * ind:.2f} %")
        rows.append(row)
    return {"benchmark": "loeo_adapt", "engine": report["engine"], "run": str(run), "heldout_examples": len(targets),
            "folds": folds, "calib_examples": n_calib, "seed": seed, "train_config": report["train_config"], "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"Leave {result['engine']} out, BN adapted on the held-out engine's unlabelled clips "
             f"({result['heldout_examples']} examples, {result['calib_examples']} calibration examples, "
             f"{result['folds']} clip folds)", "",
             "| width | in-distribution | held-out, training BN | BN from other clips | BN from other voices | gap (pt): training / clips / voices |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        h, g = r["heldout_accuracy"], r["gap_pt"]
        lines.append(f"| {r['width']} | {100 * r['in_distribution_accuracy']:.2f} % | {100 * h['training']:.2f} % "
                     f"| {100 * h['clips']:.2f} % | {100 * h['voices']:.2f} % "
                     f"| {g['training']:+.2f} / {g['clips']:+.2f} / {g['voices']:+.2f} |")
    widest = result["rows"][-1]
    lines += ["", f"Per voice at width {widest['width']} (training BN → other clips / other voices):", "",
              "| voice | training BN | other clips | other voices |", "| --- | --- | --- | --- |"]
    for v, a in widest["per_voice"].items():
        lines.append(f"| {v} | {100 * a['training']:.2f} % | {100 * a['clips']:.2f} % | {100 * a['voices']:.2f} % |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgekws.fileio import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="an `edgekws loeo` output folder")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--calib-examples", type=int, default=512, help="examples each BN recalibration averages over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="default: results/loeo_adapt_<engine>.json")
    args = ap.parse_args()
    if args.folds < 2:
        raise SystemExit(f"--folds must be at least 2, got {args.folds}")
    if args.calib_examples < 1:
        raise SystemExit(f"--calib-examples must be at least 1, got {args.calib_examples}")
    if not (args.run / "loeo.json").is_file():
        raise SystemExit(f"{args.run}: no loeo.json (give an `edgekws loeo` output folder)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from edgekws.errors import EdgeKWSError

    try:
        result = adapt(args.run, args.folds, args.calib_examples, args.seed, args.cache_dir)
    except EdgeKWSError as err:
        raise SystemExit(str(err))
    result["date"] = time.strftime("%Y-%m-%d")
    text = markdown(result)
    print(text, end="")
    out = args.out or RESULTS / f"loeo_adapt_{result['engine']}.json"
    write_text_atomic(out, json.dumps(result, indent=1, sort_keys=True) + "\n")
    write_text_atomic(out.with_suffix(".md"), text)


if __name__ == "__main__":
    main()
