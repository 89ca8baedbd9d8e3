"""How good are the latency models and the search? For each tier:

- the cost model's error on held-out subnets (grouped k-fold MAPE, share within ±10 %), per
  runtime and precision — measured latency on this host, instruction counts under qemu;
- search wall time; the NSGA-II pick vs the best uniform-width subnet inside the same budgets
  (accuracy, latency) and vs random search with the same number of trials and seed.

    python benchmarks/search_quality.py [--targets pi3 pi4 pi5 pi_zero2w host_x86] [--trials 200]
        [--samples 12] [--work release]

Reuses the measurement rows and the accuracy cache of a release run in --work (measures only what
is missing). Writes benchmarks/results/search_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from edgekws.release import prepare
    from edgekws.search import best_uniform, search
    from edgekws.targets import get_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["pi_zero2w", "pi3", "pi4", "pi5", "host_x86"])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=Path("release"))
    args = ap.parse_args()
    targets = [get_target(t) for t in args.targets]
    ctx = prepare(targets, args.work, samples=args.samples)
    rows = []
    for t in targets:
        pred = ctx.predictor(t)
        models = {f"{r}/{p}": m.holdout | {"quantity": m.quantity, "subnets": m.specs} for (r, p), m in pred.latency.items()}
        ram = {f"{r}/{p}": m.holdout | {"subnets": m.specs} for (r, p), m in pred.ram.items()}
        ub, _ = best_uniform(ctx.oracle.ck.space, t, ctx.oracle.accuracy, pred, ctx.tier_runtimes[t.key])
        per_seed = []
        for seed in args.seeds:
            res = {}
            for sampler in ("nsga2", "random"):
                t0 = time.perf_counter()
                r = search(ctx.oracle.ck.space, t, ctx.oracle.accuracy, pred, ctx.tier_runtimes[t.key], trials=args.trials,
                           seed=seed, sampler=sampler)
                res[sampler] = {"seconds": round(time.perf_counter() - t0, 1),
                                "accuracy": r.pick.accuracy if r.pick else None,
                                "latency_ms": r.pick.latency_ms if r.pick else None,
                                "pick": f"{r.pick.spec.name} {r.pick.precision}" if r.pick else None,
                                "front": len(r.front), "distinct": len({e.key for e in r.evaluations})}
            ctx.oracle.flush()
            per_seed.append({"seed": seed, **res})
            print(f"{t.key} seed {seed}: nsga2 {res['nsga2']['pick']} {res['nsga2']['accuracy']} "
                  f"({res['nsga2']['seconds']} s) | random {res['random']['pick']} {res['random']['accuracy']}", flush=True)
        rows.append({"target": t.key, "latency_source": ctx.sources[t.key], "latency_models": models, "ram_models": ram,
                     "uniform": {"pick": f"{ub.spec.name} {ub.precision}", "accuracy": ub.accuracy,
                                 "latency_ms": ub.latency_ms} if ub else None, "seeds": per_seed})
    RESULTS.mkdir(exist_ok=True)
    doc = {"trials": args.trials, "samples": args.samples, "oracle": ctx.oracle.source, "rows": rows}
    (RESULTS / "search_quality.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Latency models and search quality", "",
             f"Accuracy oracle: {ctx.oracle.source}. {args.trials} trials per search; seeds {args.seeds}.", "",
             "## Cost-model error on held-out subnets (grouped 5-fold)", "",
             "| tier | source | runtime/precision | quantity | subnets | MAPE % | p90 APE % | within ±10 % |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        for k, m in r["latency_models"].items():
            lines.append(f"| {r['target']} | {r['latency_source']} | {k} | {m['quantity']} | {m['subnets']} | {m['mape_pct']} | "
                         f"{m['p90_ape_pct']} | {100 * m['within_10pct']:.0f} % |")
    lines += ["", "## Pick vs baselines (validation accuracy, %; latency ms)", "",
              "| tier | best uniform width | NSGA-II pick (per seed) | random search (per seed) | NSGA-II s |", "|---|---|---|---|---:|"]
    for r in rows:
        u = r["uniform"]
        us = f"{100 * u['accuracy']:.1f} @ {u['latency_ms']:.3f}" if u else "none fits"
        ns = ", ".join(f"{100 * s['nsga2']['accuracy']:.1f} @ {s['nsga2']['latency_ms']:.3f}" if s["nsga2"]["accuracy"] else "none"
                       for s in r["seeds"])
        rs = ", ".join(f"{100 * s['random']['accuracy']:.1f} @ {s['random']['latency_ms']:.3f}" if s["random"]["accuracy"] else "none"
                       for s in r["seeds"])
        secs = "/".join(str(s["nsga2"]["seconds"]) for s in r["seeds"])
        lines.append(f"| {r['target']} | {us} | {ns} | {rs} | {secs} |")
    (RESULTS / "search_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
