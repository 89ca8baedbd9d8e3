"""Train once vs train twins: the seeds' headline claim, in one command.

    python benchmarks/train_once.py --data-dir DIR [--epochs N] [--supernet CKPT] [--twins-only]
        [--widths 0.25 0.5 ...] [--procs 2] [--seed N] [--twins-from RESULTS.json] [--tag _X]
        [--results DIR]

For each width (0.25, 0.5, 0.75, 1.0) an independent model of exactly that spec is trained from
scratch with the same data, recipe, seed and epochs (`TrainConfig(fixed_spec=...)`); the supernet
(trained here, or an existing checkpoint trained with the same epochs via --supernet) gives the
same four subnets in one run. Writes benchmarks/results/train_once_<family>_<epochs>ep.{json,md}:
test accuracy per width, supernet vs twin, and CPU time of the supernet vs the sum of the twins.
Both use the family's default recipe (`TrainConfig.for_family`) at the same epochs, or, with
--supernet, the twins take that supernet's recorded recipe (its supernet-only knobs aside), so a
supernet trained with another recipe (`--input-norm band_mean --channel-augment`) is compared with
twins trained the same way. Checkpoints are kept under --work (twins of a non-default recipe under
names that say how it differs) and every run resumes, so the comparison can span sessions.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from edgekws.checkpoint import load_checkpoint
from edgekws.fileio import write_text_atomic
from edgekws.models import get_family
from edgekws.train import TrainConfig, train_local

RESULTS = Path(__file__).resolve().parent / "results"
# Recipe fields that only a supernet's training uses: a twin (one spec, from the labels) is the same
# whatever they are.
SUPERNET_ONLY = {"num_random", "sampling", "sampler", "small_width_bias", "width_anchors", "anchor_depth", "draw_fraction",
                 "narrowest_anchor_weight", "kd_ladder",
                 "small_label_weight", "kd", "alpha_min",
                 "alpha_max", "alpha_clip", "fixed_spec", "teacher", "teacher_temperature", "teacher_weight"}


def twin_recipe(family: str, epochs: int, seed: int, supernet_config: dict | None) -> TrainConfig:
    """The recipe every twin trains with (before its `fixed_spec`): the family's default, or the
    knobs of the supernet it is compared with that a one-spec run uses. Why: a twin on another
    recipe than its supernet's would measure the recipe, not training once."""
    base = TrainConfig.for_family(family, epochs=epochs, seed=seed)
    if supernet_config is None:
        return base
    recorded = TrainConfig.recorded(supernet_config, known_only=True).to_dict()
    if recorded["family"] != family:
        raise SystemExit(f"the supernet is a {recorded['family']} supernet, not {family}")
    shared = {k: v for k, v in recorded.items() if k not in SUPERNET_ONLY | {"family", "epochs", "seed"}}
    return replace(base, **shared)


def recipe_suffix(family: str, cfg: TrainConfig) -> str:
    """File-name suffix of a twin trained with `cfg`: empty for the family's default (the names
    earlier runs used), else the knobs that differ in field order, e.g. `_channel_augment-True_input_norm-band_mean`."""
    default = TrainConfig.for_family(family, epochs=cfg.epochs, seed=cfg.seed).to_dict()
    diff = [f"{k}-{v}" for k, v in cfg.to_dict().items() if k not in SUPERNET_ONLY and default[k] != v]
    return "".join(f"_{d}" for d in diff)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--family", default="dscnn")
    ap.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    ap.add_argument("--supernet", type=Path, default=None, help="reuse this supernet checkpoint")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekws-train-once"))
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--procs", type=int, default=2, help="training processes (see edgekws train --procs)")
    ap.add_argument("--widths", type=float, nargs="*", default=None, help="only these widths (default: all four)")
    ap.add_argument("--twins-only", action="store_true", help="train the missing twins and stop (run the supernet beside)")
    ap.add_argument("--twins-from", type=Path, default=None,
                    help="take the twins' figures from an earlier results file instead of their checkpoints; widths it lacks are "
                         "trained (a twin is "
                         "one spec trained alone: the supernet-only knobs — random subnets, sampling, small-subnet "
                         "losses — do not change it; the rest of the recipe must match, or this refuses)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the results files")
    ap.add_argument("--tag", default="", help="suffix of the results file names (several supernets against the same twins)")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed of the twins (and of a supernet trained here); twins of seed N > 0 are kept as "
                         "twin_<width>_<epochs>ep_seed<N>.pt, so a second seed's twins sit beside the first's")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seeded = f"_seed{args.seed}" if args.seed else ""  # seed 0 keeps the file names of earlier runs
    space = get_family(args.family).space
    sup = load_checkpoint(args.supernet) if args.supernet is not None else None
    if sup is not None and sup.train_config["epochs"] != args.epochs:
        raise SystemExit(f"{args.supernet} was trained for {sup.train_config['epochs']} epochs, not {args.epochs}")
    twin_cfg = twin_recipe(args.family, args.epochs, args.seed, sup.train_config if sup is not None else None)
    recipe_tag = recipe_suffix(args.family, twin_cfg)

    twins = {}
    recorded = json.loads(args.twins_from.read_text()) if args.twins_from else None
    recorded_widths = {r["width"] for r in recorded["rows"]} if recorded else set()
    for m, spec in space.width_multiplier_specs().items():
        if args.widths and m not in args.widths:
            continue
        if m in recorded_widths:  # a width the earlier file lacks is trained here, beside the recorded ones
            continue
        path = args.work / f"twin_{m:g}_{args.epochs}ep{seeded}{recipe_tag}.pt"
        if not path.exists():
            train_local(args.procs, args.data_dir, path, replace(twin_cfg, fixed_spec=spec.to_dict()),
                        cache_dir=args.cache_dir, resume=True, threads_per_proc=args.threads)
        twins[m] = (spec, path)
    if args.twins_only:
        return
    if sup is None:
        args.supernet = args.work / f"supernet_{args.epochs}ep{seeded}.pt"
        if not args.supernet.exists():
            train_local(args.procs, args.data_dir, args.supernet,
                        TrainConfig.for_family(args.family, epochs=args.epochs, seed=args.seed),
                        cache_dir=args.cache_dir, resume=True, threads_per_proc=args.threads)
        sup = load_checkpoint(args.supernet)

    rows = []
    if recorded is not None:
        twin_knobs = {k: v for k, v in twin_cfg.to_dict().items() if k not in SUPERNET_ONLY}
        # a knob the file predates ran as it did before the knob existed (`input_norm` "none")
        ran = TrainConfig.recorded(recorded["recipe"], known_only=True).to_dict()
        mismatch = {k: (ran[k], v) for k, v in twin_knobs.items() if ran[k] != v}
        if mismatch or recorded["epochs"] != args.epochs:
            raise SystemExit(f"{args.twins_from}: twins were trained with another recipe ({mismatch}) or epochs")
        for r in recorded["rows"]:
            if args.widths and r["width"] not in args.widths:
                continue
            sup_acc = sup.metrics["test"][f"width_{r['width']:g}"]["accuracy"]
            rows.append({**r, "supernet": sup_acc, "delta_pt": round(100 * (sup_acc - r["twin"]), 2),
                         "twin_from": str(args.twins_from.name),
                         "twin_procs": r.get("twin_procs", recorded["recipe"].get("world_size", 1))})
    for m, (spec, path) in twins.items():
        twin = load_checkpoint(path)
        sup_acc = sup.metrics["test"][f"width_{m:g}"]["accuracy"]
        twin_acc = twin.metrics["test"]["fixed"]["accuracy"]
        rows.append({"width": m, "spec": spec.name, "supernet": sup_acc, "twin": twin_acc,
                     "delta_pt": round(100 * (sup_acc - twin_acc), 2),
                     "twin_cpu_s": twin.metrics["train_cpu_seconds"], "twin_wall_s": twin.metrics["train_seconds"],
                     "twin_procs": twin.metrics.get("world_size", 1),
                     "twin_machines": twin.metrics.get("machines", "unrecorded")})
    rows.sort(key=lambda r: r["width"])
    twins_cpu = sum(r["twin_cpu_s"] for r in rows)
    result = {
        "benchmark": "train_once",
        "family": args.family,
        "epochs": args.epochs,
        "test_examples": sup.metrics.get("test_examples"),
        "rows": rows,
        "supernet_cpu_s": sup.metrics["train_cpu_seconds"],
        "supernet_wall_s": sup.metrics["train_seconds"],
        # which CPU trained which epochs (wall time differs ~2x between this workplace's machine kinds)
        "supernet_machines": sup.metrics.get("machines", "unrecorded"),
        "twins_cpu_s": round(twins_cpu, 1),
        "cpu_ratio_supernet_over_twins": round(sup.metrics["train_cpu_seconds"] / twins_cpu, 3),
        "goal": "every subnet at least as good as its twin (delta_pt >= 0), at <= 0.4x the twins' total CPU time",
        "recipe": {k: v for k, v in sup.train_config.items() if k not in ("data_dir", "fixed_spec")},
        "date": time.strftime("%Y-%m-%d"),
    }
    result["all_widths_at_least_twin"] = all(r["delta_pt"] >= 0 for r in rows)
    if len(rows) < 4:
        result["partial"] = f"twins trained for widths {[r['width'] for r in rows]} only; the CPU ratio covers those"
    lines = ["| width | subnet | supernet | twin | Δ pt | twin CPU s | twin wall s | twin processes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['width']:g} | `{r['spec']}` | {100 * r['supernet']:.2f} % | {100 * r['twin']:.2f} % "
                     f"| {r['delta_pt']:+.2f} | {r['twin_cpu_s']:.0f} | {r['twin_wall_s']:.0f} | {r.get('twin_procs', 1)} |")
    lines.append(f"\nSupernet CPU time {result['supernet_cpu_s']:.0f} s vs twins' total {twins_cpu:.0f} s "
                 f"(ratio {result['cpu_ratio_supernet_over_twins']:.2f}); {args.epochs} epochs each.")
    if len({r.get("twin_procs", 1) for r in rows}) > 1:
        result["cpu_note"] = ("twins trained with different process counts: a run of N processes sums N ranks' CPU "
                              "(each makes its own share of every batch and waits in the all-reduce), so its CPU "
                              "seconds are not comparable with a one-process run's")
        lines.append(f"Note: {result['cpu_note']}.")
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"train_once_{args.family}_{args.epochs}ep{args.tag}"
    write_text_atomic(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
