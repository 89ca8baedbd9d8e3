"""Train once, then polish: each width of a supernet fine-tuned alone, against its twin.

    python benchmarks/finetune.py --data-dir DIR --twins benchmarks/results/train_once_dscnn_150ep_v5.json
        [--checkpoint CKPT] [--widths 0.25 0.5 ...] [--epochs 20] [--lr 1e-3] [--tag _x]

For each width the uniform subnet is fine-tuned with `edgekws finetune`'s defaults (or the
--epochs / --lr / --teacher-weight given): trained alone, from the supernet's weights, taught by
the supernet's largest subnet. The twins' figures (a model of that spec trained alone from scratch
for as many epochs as the supernet) come from a train_once results file. Writes
benchmarks/results/finetune_<family>_<epochs>ep<tag>.{json,md}: per width the supernet's subnet as
extracted, fine-tuned, the twin, both deltas, and CPU time (supernet + fine-tunes vs the twins).
Every run resumes from its checkpoint under --work, so the table can span sessions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgekws.assets import DEFAULT_CHECKPOINT
from edgekws.checkpoint import load_checkpoint
from edgekws.finetune import finetune_config, source_accuracy
from edgekws.recipe import FINETUNE
from edgekws.train import train_local

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--twins", type=Path, required=True, help="a train_once results file (its twins and epochs)")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--widths", type=float, nargs="*", default=None)
    ap.add_argument("--epochs", type=int, default=FINETUNE.epochs)
    ap.add_argument("--lr", type=float, default=FINETUNE.lr)
    ap.add_argument("--teacher-weight", type=float, default=FINETUNE.teacher_weight)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekws-finetune"))
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    source = load_checkpoint(args.checkpoint)
    twins = {r["width"]: r for r in json.loads(args.twins.read_text())["rows"]}
    widths = args.widths or sorted(twins)

    rows = []
    for m in widths:
        spec = source.space.uniform(m)
        path = args.work / f"ft_{source.family}_{m:g}_{args.epochs}ep_lr{args.lr:g}_tw{args.teacher_weight:g}.pt"
        if not path.exists():
            cfg = finetune_config(source, args.checkpoint, spec, epochs=args.epochs, lr=args.lr,
                                  teacher_weight=args.teacher_weight)
            train_local(args.procs, args.data_dir, path, cfg, cache_dir=args.cache_dir, resume=True)
        ft = load_checkpoint(path)
        before, after = source_accuracy(source, spec), ft.metrics["test"]["fixed"]["accuracy"]
        twin = twins.get(m, {}).get("twin")
        rows.append({"width": m, "spec": spec.name, "supernet": before, "finetuned": after, "twin": twin,
                     "gain_pt": round(100 * (after - before), 2),
                     "delta_pt_supernet": None if twin is None else round(100 * (before - twin), 2),
                     "delta_pt_finetuned": None if twin is None else round(100 * (after - twin), 2),
                     "finetune_cpu_s": ft.metrics["train_cpu_seconds"], "finetune_wall_s": ft.metrics["train_seconds"]})
    twins_cpu = sum(twins[r["width"]]["twin_cpu_s"] for r in rows if r["width"] in twins)
    total = source.metrics["train_cpu_seconds"] + sum(r["finetune_cpu_s"] for r in rows)
    result = {
        "benchmark": "finetune",
        "family": source.family,
        "checkpoint": str(args.checkpoint),
        "supernet_epochs": source.train_config.get("epochs"),
        "epochs": args.epochs, "lr": args.lr, "teacher_weight": args.teacher_weight,
        "twins_from": args.twins.name,
        "rows": rows,
        "supernet_cpu_s": source.metrics["train_cpu_seconds"],
        "supernet_plus_finetunes_cpu_s": round(total, 1),
        "twins_cpu_s": round(twins_cpu, 1),
        "cpu_ratio_over_twins": round(total / twins_cpu, 3) if twins_cpu else None,
        "all_finetuned_at_least_twin": all(r["delta_pt_finetuned"] is not None and r["delta_pt_finetuned"] >= 0
                                           for r in rows),
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = ["| width | subnet | supernet | fine-tuned | twin | Δ supernet pt | Δ fine-tuned pt | fine-tune CPU s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    sgn = lambda v: "n/a" if v is None else f"{v:+.2f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['width']:g} | `{r['spec']}` | {pct(r['supernet'])} | {pct(r['finetuned'])} | {pct(r['twin'])} "
                     f"| {sgn(r['delta_pt_supernet'])} | {sgn(r['delta_pt_finetuned'])} | {r['finetune_cpu_s']:.0f} |")
    lines.append(f"\n{args.epochs} fine-tuning epochs per width (lr {args.lr:g}, teacher weight {args.teacher_weight:g}) "
                 f"after {result['supernet_epochs']} supernet epochs. CPU: supernet + fine-tunes {total:.0f} s vs the "
                 f"twins' {twins_cpu:.0f} s (ratio {result['cpu_ratio_over_twins']}).")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"finetune_{source.family}_{args.epochs}ep{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
