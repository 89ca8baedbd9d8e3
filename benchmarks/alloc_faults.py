"""Page faults and time of a bare forward + backward loop, glibc's allocator thresholds vs the engine's.

    python benchmarks/alloc_faults.py [--iters 10] [--family dscnn]

Each mode runs in a fresh process (what a process allocated before decides where glibc puts the
next block): `glibc` as the C library starts, `engine` after `edgekws.alloc.keep_freed_memory()`,
which every training process calls. Per uniform width it prints the mean time of an
iteration (random input, batch 128, channels-last, 2 threads) and the minor page faults and
system time those iterations cost; then what the search's accuracy oracle spends per subnet (BN
recalibration and a pass over the shipped validation pack, 4 random specs). Writes benchmarks/results/alloc_faults_<family>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(mode: str, family: str, iters: int) -> dict:
    import resource

    import torch

    from edgekws.alloc import keep_freed_memory
    from edgekws.models import create_supernet

    applied = keep_freed_memory() if mode == "engine" else False
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = create_supernet(family, 12, (49, 40)).to(memory_format=torch.channels_last)
    x = torch.randn(128, 49, 40)
    rows = {}
    for m in (0.5, 0.75, 1.0):
        model.set_active(model.space.uniform(m))
        for _ in range(3):  # warm-up
            model(x).sum().backward()
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(iters):
            model(x).sum().backward()
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        rows[str(m)] = {"ms_per_iter": round((t1 - t0) / iters * 1000, 1), "minor_faults": r1.ru_minflt - r0.ru_minflt,
                        "sys_s": round(r1.ru_stime - r0.ru_stime, 2)}
    # what the search's accuracy oracle does per trial: BN recalibration and a pass over the
    # validation pack, here for the shipped supernet and 4 per-stage specs
    import numpy as np

    from edgekws.assets import VALIDATION_PACK, load_pack
    from edgekws.checkpoint import load_checkpoint
    from edgekws.train import evaluate_spec

    ck = load_checkpoint(Path(__file__).resolve().parents[1] / "edgekws" / "assets" / f"{family}_supernet.pt")
    pack, net, calib = load_pack(VALIDATION_PACK), ck.supernet(), ck.calibration_features()
    rng = np.random.default_rng(0)
    specs = [ck.space.sample(rng) for _ in range(4)]
    with torch.no_grad():  # as the oracle runs it
        evaluate_spec(net, specs[0], pack, calib)  # warm-up
        t0 = time.perf_counter()
        for spec in specs:
            evaluate_spec(net, spec, pack, calib)
    oracle_ms = round((time.perf_counter() - t0) / len(specs) * 1000, 1)
    return {"applied": applied, "widths": rows, "oracle_ms_per_spec": oracle_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--family", default="dscnn")
    ap.add_argument("--mode", choices=["glibc", "engine"], help=argparse.SUPPRESS)  # one fresh process
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.family, args.iters)))
        return
    from edgekws.fileio import write_text_atomic
    from edgekws.targets import host_facts

    out = {"benchmark": "alloc_faults", "family": args.family, "iters": args.iters, "cpu": host_facts()["cpu"],
           "date": time.strftime("%Y-%m-%d"), "modes": {}}
    for mode in ("glibc", "engine"):
        res = subprocess.run([sys.executable, __file__, "--mode", mode, "--iters", str(args.iters), "--family", args.family],
                             capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            sys.exit(f"error: the {mode} measurement failed (exit {res.returncode}): {last}")
        out["modes"][mode] = json.loads(res.stdout.strip().splitlines()[-1])
        for w, r in out["modes"][mode]["widths"].items():
            print(f"{mode:7s} width {w:5s} {r['ms_per_iter']:6.1f} ms/iter  {r['minor_faults']:7d} minor faults  sys {r['sys_s']} s",
                  flush=True)
        print(f"{mode:7s} oracle: {out['modes'][mode]['oracle_ms_per_spec']} ms per subnet (BN recalibration + "
              f"the validation pack)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"alloc_faults_{args.family}.json"
    write_text_atomic(path, json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
