"""Corpus generation rate: clips per second with the real TTS engines, written to results/.

    python benchmarks/synth_rate.py [--clips 32000] [--workers 2] [--out DIR] [--seed 0]

Times `edgekws.synth.synthesize` on a fresh folder (a temporary one unless --out is given; an
existing --out is resumed, and only freshly generated clips count towards the rate) and records
clips/s, the share of each engine, and the projected time for the default 32k-clip corpus.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

from edgekws.synth import DEFAULT_CLIPS, synthesize

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekws-bench-") as tmp:
        out = args.out or Path(tmp) / "corpus"
        t0 = time.perf_counter()
        rep = synthesize(out, args.clips, seed=args.seed, workers=args.workers)
        wall = time.perf_counter() - t0
        engines = Counter(r["engine"] for r in csv.DictReader(open(out / "meta.csv")))
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    rate = rep.generated / wall if rep.generated else float("nan")
    result = {
        "benchmark": "synth_rate",
        "clips": args.clips,
        "generated": rep.generated,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "wall_s": round(wall, 1),
        "clips_per_s": round(rate, 2),
        "projected_default_corpus_min": round(DEFAULT_CLIPS / rate / 60, 1) if rep.generated else None,
        "engine_share": {k: round(v / args.clips, 3) for k, v in sorted(engines.items())},
        "clips_per_split": rep.per_split,
        "voices_per_split": rep.voices_per_split,
        "corpus_mb": round(size_mb, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / f"synth_rate_{args.clips}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
