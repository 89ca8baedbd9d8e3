"""Does a supernet's subnet trail its separately trained twin because it fits the training data
less well (underfitting: shared weights pulled by every subnet) or because it generalises worse
(overfitting)? Score both on the training split and on the test split.

    python benchmarks/fit_vs_twins.py --data-dir DIR --supernet S.pt --twin 0.25=T1.pt --twin 1.0=T4.pt
        [--tag NAME]

Both are scored as deployed (extracted, BN recalibrated on the checkpoint's calibration set) on
clean features — no augmentation, no SpecAugment — so the training-split figure is how well the
weights fit the data they learnt from, not the training loop's running accuracy. Writes
benchmarks/results/fit_vs_twins{tag}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = ("train", "testing")


def main() -> None:
    from edgekws.errors import EdgeKWSError

    try:
        run()
    except EdgeKWSError as err:  # a missing or unreadable checkpoint or data folder: one line, no traceback
        raise SystemExit(f"error: {err}")


def run() -> None:
    from edgekws.evaluate import evaluate_checkpoint
    from edgekws.fileio import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--supernet", type=Path, required=True)
    ap.add_argument("--twin", action="append", required=True, help="WIDTH=CHECKPOINT (repeatable)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    twins = {}
    for t in args.twin:
        w, sep, path = t.partition("=")
        try:
            twins[float(w)] = Path(path)
        except ValueError:
            sep = ""
        if not sep or not path:
            raise SystemExit(f"error: --twin {t!r}: expected WIDTH=CHECKPOINT, e.g. 0.25=twin.pt")
    widths = sorted(twins)

    acc: dict[str, dict[str, dict[float, float]]] = {"supernet": {}, "twin": {}}
    for split in SPLITS:
        rep = evaluate_checkpoint(args.supernet, args.data_dir, widths=widths, split=split, cache_dir=args.cache_dir)
        acc["supernet"][split] = {float(r["width"]): r["accuracy"] for r in rep["results"]}
        acc["twin"][split] = {}
        for w, path in twins.items():
            (row,) = evaluate_checkpoint(path, args.data_dir, split=split, cache_dir=args.cache_dir)["results"]
            acc["twin"][split][w] = row["accuracy"]

    rows = []
    for w in widths:
        s_tr, s_te = acc["supernet"]["train"][w], acc["supernet"]["testing"][w]
        t_tr, t_te = acc["twin"]["train"][w], acc["twin"]["testing"][w]
        rows.append({"width": w, "supernet_train": s_tr, "twin_train": t_tr, "delta_train_pt": round(100 * (s_tr - t_tr), 2),
                     "supernet_test": s_te, "twin_test": t_te, "delta_test_pt": round(100 * (s_te - t_te), 2),
                     "supernet_generalisation_gap_pt": round(100 * (s_tr - s_te), 2),
                     "twin_generalisation_gap_pt": round(100 * (t_tr - t_te), 2)})
    lines = ["# Supernet subnets against their twins: training split vs test split", "",
             f"Supernet `{args.supernet}`; twins " + ", ".join(f"{w:g}: `{p}`" for w, p in twins.items()), "",
             "| width | train: supernet / twin (Δ pt) | test: supernet / twin (Δ pt) | train − test: supernet / twin (pt) |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['width']:g} | {100 * r['supernet_train']:.2f} / {100 * r['twin_train']:.2f} % "
                     f"({r['delta_train_pt']:+.2f}) | {100 * r['supernet_test']:.2f} / {100 * r['twin_test']:.2f} % "
                     f"({r['delta_test_pt']:+.2f}) | {r['supernet_generalisation_gap_pt']:.2f} / "
                     f"{r['twin_generalisation_gap_pt']:.2f} |")
    doc = {"supernet": str(args.supernet), "twins": {str(w): str(p) for w, p in twins.items()}, "rows": rows}
    write_text_atomic(RESULTS / f"fit_vs_twins{args.tag}.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(RESULTS / f"fit_vs_twins{args.tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
