"""Why `torch.compile` does not pay for the training step here: one spec's forward + backward, eager
against compiled (static shapes), alternating in one process.

    python benchmarks/compile_probe.py [--steps 20] [--threads 2]

For the largest and the smallest dscnn subnet, in channels-last (the engine's layout) and NCHW, and
with inductor's default and `max-autotune-no-cudagraphs` modes, it times a batch of 128 through
forward, cross-entropy and backward: eager and compiled alternate step by step (A B B A …) after a
first compiled step that compiles (its seconds are reported). `benchmarks/train_speed.py
--alternate recipe+anchors3_nr7 recipe+anchors3_nr7+compile_fixed` measures the whole step; this
says where the difference comes from. Writes benchmarks/results/compile_probe_dscnn.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

CASES = [  # (spec, layout, inductor mode)
    ("largest", "channels_last", "default"),
    ("smallest", "channels_last", "default"),
    ("largest", "nchw", "default"),
    ("largest", "channels_last", "max-autotune-no-cudagraphs"),
]


def probe(spec_name: str, layout: str, mode: str, steps: int) -> dict:
    import torch

    from edgekws.models import create_supernet, get_family

    space = get_family("dscnn").space
    torch.manual_seed(0)
    model = create_supernet("dscnn", 12, (49, 40)).train()
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    model.set_active(space.largest() if spec_name == "largest" else space.smallest())
    compiled = torch.compile(model, dynamic=False, **({} if mode == "default" else {"mode": mode}))
    x, y = torch.randn(128, 49, 40), torch.randint(0, 12, (128,))

    def step(f) -> float:
        t = time.perf_counter()
        torch.nn.functional.cross_entropy(f(x), y).backward()
        return time.perf_counter() - t

    compile_s = step(compiled)
    eager, comp = [], []
    for i in range(steps):
        for f, acc in ((model, eager), (compiled, comp)) if i % 2 == 0 else ((compiled, comp), (model, eager)):
            acc.append(step(f))
    e, c = statistics.median(eager[2:]), statistics.median(comp[2:])
    return {"spec": spec_name, "layout": layout, "mode": mode, "eager_ms": round(1e3 * e, 1),
            "compiled_ms": round(1e3 * c, 1), "ratio": round(c / e, 3), "first_compiled_step_s": round(compile_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from edgekws.alloc import keep_freed_memory
    from edgekws.fileio import write_text_atomic
    from edgekws.targets import host_facts

    keep_freed_memory()  # the engine's allocator setting
    torch.set_num_threads(args.threads)
    rows = []
    for case in CASES:
        r = probe(*case, args.steps)
        rows.append(r)
        print(f"{r['spec']:8s} {r['layout']:13s} {r['mode']:27s} eager {r['eager_ms']:6.1f} ms  "
              f"compiled {r['compiled_ms']:6.1f} ms  x{r['ratio']:.3f}  (compile + first step {r['first_compiled_step_s']} s)",
              flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "compile_probe_dscnn.json"
    write_text_atomic(out, json.dumps({"benchmark": "compile_probe", "cpu": host_facts()["cpu"], "threads": args.threads,
                                       "torch": torch.__version__, "batch": 128, "steps": args.steps,
                                       "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
