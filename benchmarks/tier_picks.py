"""Which supernet gives the better model per device tier? The release's own search, run on each
candidate checkpoint under the same latency models, its pick scored on the validation pack (what
the search maximises) and on the test pack (unbiased by the choice).

    python benchmarks/tier_picks.py CKPT [CKPT ...] [--work benchmarks/results/release]
        [--targets pi_zero2w pi3 pi4 pi5 host_x86] [--trials 200] [--seeds 0 1 2] [--tag _X]

Why this and not a fixed set of mixed specs: the 16 random specs of `space_coverage.py` weigh
every corner of the space alike, while a release ships only the search's picks — the accurate
edge of each tier's budget. A supernet that trades a little on random specs for a lot on the
uniform widths may or may not change what a tier gets; this says which.

The latency and RAM models are fitted once, from the measurement rows of one checkpoint's
release run in `--work` (`--rows-of`, default the first checkpoint; latency depends on the
architecture, not on the weights, so every candidate is searched under identical budgets and
models; nothing is measured again when those rows are there). A candidate whose architecture
arguments differ from that checkpoint's (kwt's `--embed conv` adds a stem every subnet runs) is
searched under models fitted on its *own* rows, measured into the same `--work` folder the
first time, with features from its own cost table: the same budgets, its own costs. Which
checkpoint's rows is recorded in the results: a release folder can hold several sets, measured on different machines, and two
runs that listed the checkpoints in another order once gave different picks for the tiers where
the machine matters. Each checkpoint's accuracy comes from its own oracle (BN recalibrated per
subnet, cached by checkpoint). Writes benchmarks/results/tier_picks<tag>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from edgekws.assets import DEFAULT_PACK
    from edgekws.checkpoint import arch_dict
    from edgekws.fileio import sha256_file, write_text_atomic
    from edgekws.oracle import AccuracyOracle
    from edgekws.release import prepare
    from edgekws.search import best_uniform, search
    from edgekws.targets import get_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--work", type=Path, default=RESULTS / "release",
                    help="release folder whose measurement rows fit the latency models")
    ap.add_argument("--rows-of", type=Path, default=None,
                    help="the checkpoint whose rows in --work fit the models (default: the first checkpoint)")
    ap.add_argument("--targets", nargs="+", default=["pi_zero2w", "pi3", "pi4", "pi5", "host_x86"])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    targets = [get_target(t) for t in args.targets]
    rows_of = args.rows_of or args.checkpoints[0]
    ctx = prepare(targets, args.work, checkpoint=rows_of, samples=args.samples)
    rows_of_sha = sha256_file(rows_of)

    def architecture(ck):
        return ck.family, arch_dict(ck.family_def().arch)

    shared_arch = architecture(ctx.oracle.ck)
    preds = {t.key: ctx.predictor(t) for t in targets}
    rows = []
    for ck in args.checkpoints:
        val = AccuracyOracle(ck)
        test = AccuracyOracle(ck, DEFAULT_PACK)
        space = val.ck.space
        own = architecture(val.ck) != shared_arch
        if own:  # another architecture: its own rows and cost table (measured once into --work)
            own_ctx = prepare(targets, args.work, checkpoint=ck, samples=args.samples)
            ck_preds, ck_rts = {t.key: own_ctx.predictor(t) for t in targets}, own_ctx.tier_runtimes
        else:
            ck_preds, ck_rts = preds, ctx.tier_runtimes
        per_tier = {}
        for t in targets:
            pred, rts = ck_preds[t.key], ck_rts[t.key]
            ub, _ = best_uniform(space, t, val.accuracy, pred, rts, pred.precisions, family=pred.family)
            picks = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                r = search(space, t, val.accuracy, pred, rts, pred.precisions, args.trials, seed, family=pred.family,
                           trained=val.ck.trained)
                p = r.pick
                picks.append({"seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                              "pick": f"{p.spec.name} {p.runtime}/{p.precision}" if p else None,
                              "val": p.accuracy if p else None, "test": test.accuracy(p.spec) if p else None,
                              "latency_ms": p.latency_ms if p else None})
                print(f"{ck.name} {t.key} seed {seed}: {picks[-1]['pick']} val {picks[-1]['val']} "
                      f"test {picks[-1]['test']}", flush=True)
            val.flush()
            test.flush()
            per_tier[t.key] = {"uniform": {"pick": f"{ub.spec.name} {ub.runtime}/{ub.precision}", "val": ub.accuracy,
                                           "test": test.accuracy(ub.spec), "latency_ms": ub.latency_ms} if ub else None,
                               "picks": picks}
        rows.append({"checkpoint": str(ck), "sha256": val.checkpoint_sha256,
                     "latency_rows": "its own (another architecture)" if own else "shared", "tiers": per_tier})

    doc = {"benchmark": "tier_picks", "date": time.strftime("%Y-%m-%d"), "trials": args.trials, "seeds": args.seeds,
           "latency_rows_from": str(args.work),
           "latency_rows_of": {"checkpoint": str(rows_of), "sha256": rows_of_sha}, "validation": val.source, "test_pack": f"{DEFAULT_PACK.name} sha256 {test.pack_sha256[:12]}", "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"tier_picks{args.tag}.json", json.dumps(doc, indent=1) + "\n")

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return f"{100 * sum(xs) / len(xs):.2f}" if xs else "none"

    lines = ["# The search's pick per tier, per supernet", "",
             f"{args.trials} trials, seeds {args.seeds}; latency models from `{args.work}`, the rows of "
             f"`{rows_of.name}` (sha256 {rows_of_sha[:12]}); "
             f"val: {val.source}; test: the same oracle on `{DEFAULT_PACK.name}` (1,000 clips of the test split). "
             "Mean over seeds, %.", "",
             "| tier | " + " | ".join(f"`{Path(r['checkpoint']).name}`{' (own latency rows)' if r['latency_rows'] != 'shared' else ''} "
                                      "val / test (best uniform test)" for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for t in targets:
        cells = []
        for r in rows:
            tr = r["tiers"][t.key]
            u = tr["uniform"]
            cells.append(f"{mean(p['val'] for p in tr['picks'])} / {mean(p['test'] for p in tr['picks'])} "
                         f"({100 * u['test']:.2f})" if u else
                         f"{mean(p['val'] for p in tr['picks'])} / {mean(p['test'] for p in tr['picks'])} (none fits)")
        lines.append(f"| {t.key} | " + " | ".join(cells) + " |")
    write_text_atomic(RESULTS / f"tier_picks{args.tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
