"""Training-engine speed: examples/s of the sandwich step per engine option, and where a step goes.

    python benchmarks/train_speed.py --data-dir DIR [--steps 30] [--family dscnn]

Every variant runs the real training step (`BatchMaker` → `train_step` → AdamW) on the
corpus's cached training clips, in one run, so the ratios compare like with like. Variants:

- `baseline`: the previous engine — 2 intra-op threads, batch made on the training thread,
  `num_random` 2, uniform-width sampling;
- `prefetch`: the batch for step k+1 made on a background thread (a rejected candidate: it
  lives only here);
- `channels_last`: NHWC memory format for the convolutions;
- `num_random=1`: one random subnet per step instead of two (fewer forwards);
- `batch256`: 256 examples per step (fewer, larger steps);
- `ranks2x1`: two processes of one thread each, gradients all-reduced (gloo) — what
  `torchrun --nproc_per_node 2` gives;
- `compile`: `torch.compile` of the supernet (compile time reported separately);
- `bf16`, `batch64`, `feature_bank`, …: one change each; `engine` is what `edgekws train`
  runs (channels-last, an 8-variant feature bank, per-stage sampling), alone and with the two
  further options;
- `recipe`: the engine at the default recipe's 4 random subnets, and `recipe+anchors…` with width
  anchors (README Stage 3) added beside or in place of per-stage draws — the time side of that trade;
  `…+ranks2x1` and `…+glibc_alloc` the default recipe's step on two one-thread ranks, and with
  glibc's own allocator thresholds instead of the engine's (`edgekws.alloc`), and `…+draw_half`
  with each per-stage draw on half of the batch (`--draw-fraction 0.5`); `…+relu_out_of_place` the
  step with the previous engine's ReLU (a new tensor after every BatchNorm; the supernet now
  applies it in place, exact because BN's backward needs its input, not its output);
  `…+omp_active` / `…+omp_passive` the step with OpenMP's workers spinning for ever / sleeping at
  once between parallel regions (OMP_WAIT_POLICY, set in the variant's fresh process before torch
  loads; the engine keeps libgomp's default, a bounded spin).

`--alternate A B` runs two variants that differ only in which subnets a step trains (or in the
ReLU) step by step in one process, A B B A …, on the same spec draws, `--repeat` times: this
machine's speed drifts by more than the differences measured here (the same default run's quiet
epochs took a median 29.0 s in one session and 36.2 s, 27.7–43.2, in the next), so a ratio
measured within one process is the one to quote.

Each variant runs in a fresh process (a step's speed depends on the allocator's state, i.e. on what
the process did before), with the engine's allocator setting unless it says otherwise.

Per variant it prints the median step time over `--steps` timed steps (after warm-up), examples/s,
the speed-up over the baseline and the share of the step spent making the batch, in forward, in
backward and in the optimizer. Writes benchmarks/results/train_speed_<family>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _setup(data_dir: Path, cache_dir: Path | None):
    import numpy as np

    from edgekws.augment import AugmentConfig, WaveAugment
    from edgekws.data import SpeechCommands, load_split
    from edgekws.features import FeatureConfig

    ds = SpeechCommands.open(data_dir, "12", 0)
    split = load_split(ds, "train", FeatureConfig(), cache_dir)
    waves = np.asarray(split.waves)
    return waves, np.asarray(split.targets), WaveAugment(ds.noise_span("train", 16000), AugmentConfig())


def prefetched(make, jobs):
    """Batch k+1 made on a background thread while step k trains."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(make, *jobs[0])
        for k in range(len(jobs)):
            batch = pending.result()
            if k + 1 < len(jobs):
                pending = pool.submit(make, *jobs[k + 1])
            yield batch


def run_variant(v: dict, data_dir: Path, family: str, steps: int, warmup: int, cache_dir: Path | None,
                rank: int = 0, world: int = 1, alt: dict | None = None) -> dict:
    """One variant's step times; with `alt` (a variant differing only in which subnets a step trains), the
    two alternate step by step in this one process on the same spec draws, so a ratio between them does
    not carry the machine's drift between processes."""

    import numpy as np
    import torch

    from edgekws.features import FeatureConfig, LogMel
    from edgekws.models import count_params, create_supernet, get_family
    from edgekws.step import make_sampler, train_step
    from edgekws.train import BatchMaker, Dist, TrainConfig, allreduce_grads, param_groups

    torch.set_num_threads(v.get("threads", 2))

    def config(v: dict) -> TrainConfig:
        return TrainConfig(family=family, batch_size=v.get("batch", 128), num_random=v.get("num_random", 2),
                           sampling=v.get("sampling", "uniform"), feature_variants=v.get("bank", 0),
                           width_anchors=v.get("width_anchors", 0), draw_fraction=v.get("draw_fraction", 1.0))

    cfg = config(v)
    waves, targets, wave_aug = _setup(data_dir, cache_dir)
    fam = get_family(family)
    # the training sampler (anchors included); with `alt`, its own sampler on every other step
    arms = [(c, make_sampler(c, fam.space), np.random.default_rng(1), w.get("relu_out_of_place", False), w.get("bf16", False),
             w.get("compile_fixed", False))
            for c, w in ([(cfg, v), (config(alt), alt)] if alt else [(cfg, v)])]
    torch.manual_seed(0)
    model = create_supernet(family, 12, (49, 40))
    if v.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    compile_s = None
    fwd_model = model
    if v.get("compile"):
        fwd_model = torch.compile(model, dynamic=True)
    fixed_compiled = any(arm[5] for arm in arms)
    if fixed_compiled:  # one static graph per fixed spec (largest, smallest, anchors)
        fwd_model = torch.compile(model, dynamic=False)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=1e-3)
    largest = count_params(fam.subnet(fam.space.largest()))
    sizes: dict = {}

    def dropout_for(spec):
        if spec not in sizes:
            with torch.random.fork_rng():
                sizes[spec] = count_params(fam.subnet(spec))
        return 0.2 * sizes[spec] / largest

    per_rank = cfg.batch_size // world
    make = BatchMaker(waves, targets, LogMel(FeatureConfig(), dtype=torch.float32), wave_aug, cfg, rank)
    order = np.random.default_rng(0).permutation(len(targets))
    jobs = [(s, order[s * cfg.batch_size:(s + 1) * cfg.batch_size][rank * per_rank:(rank + 1) * per_rank])
            for s in range(warmup + steps)]
    d = Dist(rank, world)
    step_s, shares = [], {"batch": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    bank_s = None
    if cfg.feature_variants:
        t0 = time.perf_counter()
        make.bank(0)
        bank_s = time.perf_counter() - t0
    it = prefetched(make, jobs) if v.get("prefetch") else (make(*j) for j in jobs)

    class _Active:  # set_active must reach the real module under torch.compile
        def __init__(self, m, f):
            self.m, self.f = m, f
            self.fixed: set = set()  # with compile_fixed: the specs that run compiled

        def set_active(self, spec):
            self.m.set_active(spec)

        def modules(self):
            return self.m.modules()

        def __call__(self, x):
            if fixed_compiled and self.m.active not in self.fixed:
                return self.m(x)  # a per-stage draw: eager (4,608 shapes would recompile without end)
            return self.f(x)

    net = _Active(model, fwd_model)
    t_start = time.perf_counter()
    arm_s: list[list[float]] = [[] for _ in arms]
    relu, relu_ = torch.relu, torch.relu_
    # A B B A A B …: each arm's k-th step draws the same specs as the other's, and whichever runs
    # second meets the same shapes warm — so the order alternates, or the second arm gains ~4 %
    arm_of = (lambda s: 0) if len(arms) == 1 else (lambda s: (s + s // 2) % 2)
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        cfg, sampler, rng, out_of_place, bf16, compiled = arms[arm_of(s)]
        sandwich = sampler.draw(rng)
        # compiled: the sandwich's largest, smallest and width anchors (they come first) run compiled
        net.fixed = set(sandwich[:2 + sampler.n_anchors()]) if compiled else set()
        tim: dict = {}
        if out_of_place:  # the previous engine: a new tensor for every ReLU (the supernet calls relu_)
            torch.relu_ = relu
        try:
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    train_step(net, batch, sandwich, cfg, dropout_for, timings=tim, rows=sampler.rows)
            else:
                train_step(net, batch, sandwich, cfg, dropout_for, timings=tim, rows=sampler.rows)
        finally:
            torch.relu_ = relu_
        t2 = time.perf_counter()
        allreduce_grads(model, d)
        opt.step()
        t3 = time.perf_counter()
        if s == warmup - 1:
            compile_s = t3 - t_start if v.get("compile") or fixed_compiled else None
        if s >= warmup:
            arm_s[arm_of(s)].append(t3 - t0)
            step_s.append(t3 - t0)
            shares["batch"] += t1 - t0
            shares["forward"] += tim["forward"]
            shares["backward"] += tim["backward"]
            shares["optimizer"] += t3 - t2
    total = sum(step_s)
    med = statistics.median(arm_s[0])
    if alt:
        alt_med = statistics.median(arm_s[1])
        return {"median_step_s": round(med, 4), "examples_per_s": round(arms[0][0].batch_size / med, 1),
                "alternate": {"variant": alt, "median_step_s": round(alt_med, 4), "steps_each": len(arm_s[1]),
                              "step_ratio": round(alt_med / med, 3)}}
    return {"median_step_s": round(med, 4), "examples_per_s": round(cfg.batch_size / med, 1),
            "share": {k: round(x / total, 3) for k, x in shares.items()},
            "compile_and_warmup_s": round(compile_s, 1) if compile_s is not None else None,
            "feature_bank_variant_s": round(bank_s, 1) if bank_s is not None else None}


def _apply_allocator(v: dict) -> None:
    """The engine's allocator setting (edgekws.alloc) unless the variant measures glibc's own."""
    if not v.get("glibc_alloc"):
        from edgekws.alloc import keep_freed_memory

        keep_freed_memory()


def _isolated_main(v: dict, args, q, alt: dict | None = None) -> None:
    _apply_allocator(v)
    try:
        q.put(run_variant(v, args.data_dir, args.family, args.steps, args.warmup, args.cache_dir, alt=alt))
    except Exception as exc:  # reported by the parent as this variant's result
        q.put({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})


def run_isolated(v: dict, args, alt: dict | None = None) -> dict:
    """One variant in a fresh process: a step's speed depends on the allocator's state, i.e. on
    what the process did before (see edgekws.alloc), so no variant inherits another's heap."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_isolated_main, args=(v, args, q, alt))
    saved = dict(os.environ)
    os.environ.update(v.get("env", {}))  # the child's environment, read by its runtimes at start
    try:
        p.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    while True:  # a child killed outright (out of memory, a signal) puts nothing: do not wait for ever
        try:
            res = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                res = {"error": f"the variant's process died (exit {p.exitcode})"}
                break
    p.join()
    return res


def _rank_main(rank: int, world: int, port: int, v: dict, args, q) -> None:
    import torch.distributed as dist

    _apply_allocator(v)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    res = run_variant(v, args.data_dir, args.family, args.steps, args.warmup, args.cache_dir, rank, world)
    if rank == 0:
        q.put(res)
    dist.barrier()
    dist.destroy_process_group()


def run_ranks(v: dict, args) -> dict:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, 2, port, v, args, q)) for r in range(2)]
    for p in procs:
        p.start()
    res = q.get()
    for p in procs:
        p.join()
    return res


VARIANTS = {
    "baseline": {},
    "prefetch": {"prefetch": True},
    "channels_last": {"channels_last": True},
    "num_random=1": {"num_random": 1},
    "batch64": {"batch": 64},
    "batch256": {"batch": 256},
    "bf16": {"bf16": True},
    "per_stage_sampling": {"sampling": "per_stage"},
    "feature_bank": {"bank": 8},
    "ranks2x1": {"threads": 1, "ranks": 2},
    "compile": {"compile": True},
    # the engine `edgekws train` uses: channels-last + feature bank, per-stage sampling
    "engine": {"channels_last": True, "bank": 8, "sampling": "per_stage"},
    "engine+num_random=1": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 1},
    "engine+ranks2x1": {"channels_last": True, "bank": 8, "sampling": "per_stage", "threads": 1, "ranks": 2},
    # the default recipe's step (4 random subnets; `engine` above keeps the 2 it was measured with)
    # and the width-anchor recipes of README Stage 3: what anchors cost beside the draws they join
    "recipe": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 4},
    "recipe+anchors1": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 5, "width_anchors": 1},
    "recipe+anchors3_nr5": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 5, "width_anchors": 3},
    "recipe+anchors3_nr7": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7, "width_anchors": 3},
    "recipe+anchors3_nr7+ranks2x1": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                     "width_anchors": 3, "threads": 1, "ranks": 2},
    # the default step with glibc's own allocator thresholds (what the engine ran before edgekws.alloc)
    "recipe+anchors3_nr7+glibc_alloc": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                        "width_anchors": 3, "glibc_alloc": True},
    # the default step with the previous engine's out-of-place ReLU (the supernet's is in place)
    "recipe+anchors3_nr7+relu_out_of_place": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                              "width_anchors": 3, "relu_out_of_place": True},
    # the default step under bfloat16 autocast (convolutions and linears in bf16: AMX on CPUs that have it)
    "recipe+anchors3_nr7+bf16": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                 "width_anchors": 3, "bf16": True},
    # the default step with its 5 fixed specs (largest, smallest, 3 width anchors) through torch.compile,
    # one static graph each (dynamic=False); the per-stage draws stay eager
    "recipe+anchors3_nr7+compile_fixed": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                          "width_anchors": 3, "compile_fixed": True},
    # the default step with OpenMP's worker threads spinning between ops instead of sleeping after
    # libgomp's spin count (OMP_WAIT_POLICY, read when the runtime starts: a fresh process each)
    "recipe+anchors3_nr7+omp_active": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                       "width_anchors": 3, "env": {"OMP_WAIT_POLICY": "ACTIVE"}},
    "recipe+anchors3_nr7+omp_passive": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                        "width_anchors": 3, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    # the default recipe with each of the 4 per-stage draws on half of the batch (--draw-fraction 0.5)
    "recipe+anchors3_nr7+draw_half": {"channels_last": True, "bank": 8, "sampling": "per_stage", "num_random": 7,
                                      "width_anchors": 3, "draw_fraction": 0.5},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--family", default="dscnn")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="variants to run (default: all)")
    ap.add_argument("--tag", default="", help="suffix of the results file name (e.g. another machine kind)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="fresh processes per variant, interleaved (A B A B …): a step's time moves between "
                         "processes, so each variant reports its median run and its step-time ratio to the first "
                         "--only variant (or the baseline) in each round")
    ap.add_argument("--skip-baseline", action="store_true",
                    help="with --only: run only those variants (speed-ups relative to the first of them)")
    ap.add_argument("--alternate", nargs=2, metavar=("A", "B"), default=None,
                    help="two variants differing only in which subnets a step trains (or the ReLU), alternating "
                         "A B B A in one process (--repeat processes): their ratio without the drift between processes")
    args = ap.parse_args()
    if args.alternate:
        return alternate(args)
    names = args.only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant '{unknown[0]}' (valid: {', '.join(VARIANTS)})")
    if args.skip_baseline and not args.only:
        sys.exit("error: --skip-baseline needs --only (the variants to compare without the baseline)")
    if "baseline" not in names and not args.skip_baseline:
        names = ["baseline", *names]
    runs: dict[str, list] = {name: [] for name in names}
    for _ in range(max(1, args.repeat)):
        for name in names:
            v = VARIANTS[name]
            try:
                r = run_ranks(v, args) if v.get("ranks") else run_isolated(v, args)
            except Exception as exc:  # a variant that cannot run here is a result, not a crash of the others
                r = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            runs[name].append(r)
    results = {}
    for name in names:
        v = VARIANTS[name]
        ok = [r for r in runs[name] if "error" not in r]
        r = sorted(ok, key=lambda r: r["median_step_s"])[(len(ok) - 1) // 2] if ok else runs[name][0]
        if len(runs[name]) > 1:
            r = {**r, "runs_median_step_s": [x.get("median_step_s") for x in runs[name]]}
            ref = args.only[0] if args.only else "baseline"  # what each run is paired with
            if name != ref:
                r["paired_with"] = ref
                r["paired_step_ratios"] = [round(x["median_step_s"] / b["median_step_s"], 3)
                                           for x, b in zip(runs[name], runs[ref]) if "error" not in x and "error" not in b]
        results[name] = r
        if "error" in r:
            print(f"{name:20s} failed: {r['error']}", flush=True)
            continue
        # speed-ups are relative to the baseline (or the first --only variant); when that one failed
        # there is nothing to divide by, so the variant reports its own figures only
        base = results["baseline" if "baseline" in results else names[0]].get("median_step_s")
        if base is not None:
            r["speedup"] = round(base / r["median_step_s"] * (v.get("batch", 128) / 128), 3)
        r["variant"] = v
        sh = r["share"]
        print(f"{name:20s} {1000 * r['median_step_s']:7.1f} ms/step {r['examples_per_s']:7.1f} ex/s "
              + (f"x{r['speedup']:.2f}" if "speedup" in r else "x?   ") + f"  batch {sh['batch']:.0%} fwd {sh['forward']:.0%} bwd {sh['backward']:.0%} "
              f"opt {sh['optimizer']:.0%}" + (f"  compile+warm-up {r['compile_and_warmup_s']} s" if r.get("compile_and_warmup_s") else "")
              + (f"  bank variant {r['feature_bank_variant_s']} s" if r.get("feature_bank_variant_s") else "")
              + (f"  paired ×{r['paired_step_ratios']} vs {r['paired_with']}" if r.get("paired_step_ratios") else ""),
              flush=True)
    _write(args, {"variants": results, "note": "speedup = examples/s relative to baseline, measured in this one run"})


def alternate(args) -> None:
    a, b = args.alternate
    for name in (a, b):
        if name not in VARIANTS:
            sys.exit(f"error: unknown variant '{name}' (valid: {', '.join(VARIANTS)})")
    engine = {k: x for k, x in VARIANTS[a].items() if k not in SAMPLER_KEYS}
    if engine != {k: x for k, x in VARIANTS[b].items() if k not in SAMPLER_KEYS} or VARIANTS[a].get("ranks"):
        sys.exit(f"error: '{a}' and '{b}' differ in more than which subnets a step trains ({', '.join(SAMPLER_KEYS)})")
    rounds = []
    for _ in range(max(1, args.repeat)):
        r = run_isolated(VARIANTS[a], args, alt=VARIANTS[b])
        if "error" in r:
            sys.exit(f"error: {r['error']}")
        rounds.append(r)
        print(f"{a} {1000 * r['median_step_s']:.1f} ms/step, {b} {1000 * r['alternate']['median_step_s']:.1f} ms/step: "
              f"x{r['alternate']['step_ratio']:.3f} ({r['alternate']['steps_each']} steps each, alternating)", flush=True)
    ratios = [r["alternate"]["step_ratio"] for r in rounds]
    print(f"{b} / {a} step time: median x{statistics.median(ratios):.3f} over {len(ratios)} processes "
          f"({min(ratios):.3f}-{max(ratios):.3f})")
    _write(args, {"mode": "alternate", "a": a, "b": b, "variant_a": VARIANTS[a], "variant_b": VARIANTS[b],
                  "rounds": rounds, "median_step_ratio": round(statistics.median(ratios), 3),
                  "note": "b's median step over a's, the two alternating A B B A in one process, same spec draws"})


# what --alternate may vary: each is chosen per step (bf16 is an autocast around the step)
SAMPLER_KEYS = ("num_random", "width_anchors", "draw_fraction", "relu_out_of_place", "bf16", "compile_fixed")


def _write(args, doc: dict) -> None:
    import torch

    from edgekws.fileio import write_text_atomic
    from edgekws.targets import host_facts

    out = {"benchmark": "train_speed", "family": args.family, "steps": args.steps, "warmup": args.warmup,
           "cpu_count": os.cpu_count(), "cpu": host_facts()["cpu"], "torch": torch.__version__, "python": sys.version.split()[0],
           "date": time.strftime("%Y-%m-%d"), **doc}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"train_speed_{args.family}{args.tag}.json"
    write_text_atomic(path, json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
