"""Where a dscnn subnet's stem spends its training time: the convolution, or BatchNorm and ReLU.

    python benchmarks/stem_cost.py [--rounds 20] [--threads 2]

Why: every subnet of a sandwich step convolves the same batch with the leading filters of the same
stem, so one full-width convolution a step could serve all of them (a prototype did, commit
7a40026; README "The engine"). That pays only if the convolution is a large part of a stem. For
each stem width, on a batch of 128 in the engine's channels-last layout, it times forward +
backward of: the whole stem (`conv+bn+relu`, what each subnet runs now), the convolution alone
(`conv`), and BatchNorm + ReLU on a dense copy of the width's slice of one shared full-width
convolution (`bn+relu of shared`, what a subnet would still run itself); plus the shared
full-width convolution once (`shared conv, once`). All cases alternate round by round in one
process (forward and reverse order), medians quoted. Writes benchmarks/results/stem_cost_dscnn.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    from edgekws.alloc import keep_freed_memory
    from edgekws.fileio import write_text_atomic
    from edgekws.models import create_supernet
    from edgekws.targets import host_facts

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_supernet("dscnn", 12, (49, 40)).train().to(memory_format=torch.channels_last)
    conv, bns = model.stem_conv.conv, model.stem_bn
    x = torch.randn(128, 49, 40).unsqueeze(1)
    widths = bns.choices

    def convolve(c: int) -> torch.Tensor:
        return F.conv2d(x, conv.weight[:c], None, conv.stride, conv.padding)

    def backward(out: torch.Tensor) -> None:
        out.backward(torch.ones_like(out))

    shared = convolve(widths[-1]).detach()

    def case(kind: str, c: int):
        bn = bns.bn[bns.index(c)]
        if kind == "conv+bn+relu":
            return lambda: backward(torch.relu_(bn(convolve(c))))
        if kind == "conv":
            return lambda: backward(convolve(c))
        if kind == "bn+relu of shared":
            def run():
                leaf = shared[:, :c].detach().requires_grad_()
                backward(torch.relu_(bn(leaf.contiguous(memory_format=torch.channels_last))))
            return run
        raise ValueError(kind)

    def shared_once() -> None:
        backward(convolve(widths[-1]))

    cases = [("shared conv, once", widths[-1], shared_once)]
    cases += [(kind, c, case(kind, c)) for c in widths for kind in ("conv+bn+relu", "conv", "bn+relu of shared")]
    times: dict[tuple[str, int], list[float]] = {(k, c): [] for k, c, _ in cases}
    for _, _, f in cases:  # warm-up
        f()
        f()
    for r in range(args.rounds):
        for kind, c, f in cases if r % 2 == 0 else cases[::-1]:
            t = time.perf_counter()
            f()
            times[(kind, c)].append(time.perf_counter() - t)
    rows = [{"case": kind, "channels": c, "median_ms": round(1e3 * statistics.median(times[(kind, c)]), 2)}
            for kind, c, _ in cases]
    for row in rows:
        print(f"{row['case']:20s} {row['channels']:3d} ch  {row['median_ms']:7.2f} ms", flush=True)
    out = {"benchmark": "stem_cost", "family": "dscnn", "batch": 128, "layout": "channels_last",
           "threads": args.threads, "rounds": args.rounds, "cpu": host_facts()["cpu"], "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d"), "rows": rows,
           "note": "forward + backward medians, all cases alternating in one process"}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "stem_cost_dscnn.json"
    write_text_atomic(path, json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
