"""Does training cover the space a search will pick from? Uniform vs mixed-width specs, per checkpoint.

    python benchmarks/space_coverage.py --data-dir DIR CKPT [CKPT ...] [--specs 16] [--spec NAME ...]

For each checkpoint: test accuracy (BN recalibrated on its calibration set, as deployed) of the
four uniform-width specs and of `--specs` random draws per stage with one fixed seed, repeats kept once (the
same specs for every checkpoint), then the mean over the mixed ones whose widths are not
uniform, and that mean split by depth: specs with a stage at its shallowest choice, and the rest
(the recipe knobs that trade the uniform widths against the mixed specs — width anchors, random
draws — move the two groups differently). A supernet trained with uniform-width sampling never
ran those mixed specs; one trained per stage did. Writes benchmarks/results/space_coverage.json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _mean(values) -> float | None:
    values = list(values)
    return round(float(np.mean(values)), 4) if values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def main() -> None:
    from edgekws.checkpoint import load_checkpoint
    from edgekws.fileio import write_text_atomic
    from edgekws.data import SpeechCommands, load_split
    from edgekws.recipe import TrainConfig
    from edgekws.spec import SpecError, SubnetSpec
    from edgekws.train import evaluate_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--specs", type=int, default=16)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--spec", action="append", default=[], metavar="NAME",
                    help="a spec to score as well, by name (repeatable): e.g. the specs tier_picks.py's searches picked")
    ap.add_argument("--out", type=Path, default=RESULTS / "space_coverage.json",
                    help="results file (default: benchmarks/results/space_coverage.json)")
    args = ap.parse_args()
    named = [SubnetSpec.parse_name(n) for n in args.spec]
    if None in named:
        ap.error(f"not a spec name: {args.spec[named.index(None)]!r} (e.g. kwt-w48.96-d4)")
    out = {"benchmark": "space_coverage", "date": time.strftime("%Y-%m-%d"), "checkpoints": {}}
    for path in args.checkpoints:
        ck = load_checkpoint(path)
        ds = SpeechCommands.open(args.data_dir, "12", int(ck.train_config.get("seed", 0)))
        test = load_split(ds, "testing", ck.features, args.cache_dir)
        model, calib, space = ck.supernet(), ck.calibration_features(), ck.space
        try:
            for s in named:
                space.validate(s)
        except SpecError as exc:
            raise SystemExit(f"{path}: {exc}") from None
        uniform = {f"{m:g}": s for m, s in space.width_multiplier_specs().items()}
        rng = np.random.default_rng(2026)
        uniform_widths = {s.channels for s in uniform.values()}
        # Distinct specs only: a small space (kwt has 80) draws repeats, which the per-name table
        # kept once while the counts and the shallow split counted them twice.
        mixed = list(dict.fromkeys(s for s in (space.sample(rng) for _ in range(args.specs))
                                   if s.channels not in uniform_widths))
        u = {k: round(evaluate_spec(model, s, test, calib)[0], 4) for k, s in uniform.items()}
        m = {s.name: round(evaluate_spec(model, s, test, calib)[0], 4) for s in mixed}
        shallow = [s.name for s in mixed if any(d == min(c) for d, c in zip(s.depths, space.depth_choices))]
        rest = [n for n in m if n not in shallow]
        row = {"sampling": ck.sampling, "epochs": ck.train_config.get("epochs"),
               # a knob a checkpoint predates ran as before it existed (TrainConfig.recorded: no anchors)
               "recipe": {k: getattr(TrainConfig.recorded(ck.train_config, known_only=True), k)
                          for k in ("num_random", "width_anchors", "anchor_depth", "draw_fraction", "narrowest_anchor_weight")},
               "uniform": u, "mixed": m, "mixed_mean": _mean(m.values()),
               "mixed_mean_shallow": _mean(m[n] for n in shallow), "mixed_shallow_count": len(shallow),
               "mixed_mean_rest": _mean(m[n] for n in rest),
               "mixed_trained": sum(ck.trained(s) for s in mixed), "mixed_count": len(mixed)}
        if named:
            row["named"] = {s.name: round(evaluate_spec(model, s, test, calib)[0], 4) for s in named}
            row["named_mean"] = _mean(row["named"].values())
        out["checkpoints"][str(path)] = row
        print(f"{path}: sampling {ck.sampling}, uniform {u}, mixed mean {100 * row['mixed_mean']:.2f} % "
              f"over {len(mixed)} distinct specs ({row['mixed_trained']} of them visited in training; "
              f"{len(shallow)} with a stage at its shallowest depth {_pct(row['mixed_mean_shallow'])}, "
              f"the other {len(rest)} {_pct(row['mixed_mean_rest'])})"
              + (f"; {len(named)} named specs {_pct(row['named_mean'])}" if named else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
