"""Every leave-one-engine-out report in one table: how far is each held-out engine from the goal?

    python benchmarks/loeo_summary.py REPORT.json [REPORT.json ...] [--goal-pt 5] [--out results/NAME.json]

Each file is a `loeo.json` report of `edgekws loeo` (any engine, recipe or length). One row per
report: the engine held out, the model (family, and kwt's `--embed` when not linear), the run's epochs, whether it trained with channel augmentation, its
input normalisation (`--input-norm`), its engine balance (`--engine-balance`), the gap (held-out minus in-distribution, points) at every
width, and at width 1.0 the held-out and
in-distribution accuracy, whether the gap is within the goal (issue 11: within 5 pt), and the
held-out voices that score lowest and highest there (silence cuts left out: they are not a voice).
`loeo_compare.py` sets two runs of one engine side by side; this sets the engines side by side, so a
claim about "an unheard engine" rests on more than one. Writes a JSON and a Markdown table
(default: benchmarks/results/loeo_summary.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WIDEST = "1"  # how `loeo` writes width 1.0


def summarise(report: dict, name: str, goal_pt: float) -> dict:
    """One report's row: per-width gaps, and at width 1.0 the goal check and the extreme voices."""
    tc = report["train_config"]
    gaps = {r["width"]: r["gap_pt"] for r in report["rows"]}
    widest = next((r for r in report["rows"] if r["width"] == WIDEST), None)
    model = tc.get("family", "dscnn") + (f" ({tc['embed']} embed)" if tc.get("embed", "linear") != "linear" else "")
    row = {"file": name, "engine": report["engine"], "model": model, "epochs": tc.get("epochs"),
           "channel_augment": bool(tc.get("channel_augment", False)), "input_norm": tc.get("input_norm", "none"),
           "engine_balance": float(tc.get("engine_balance", 0.0)),
           "heldout_examples": report["heldout_examples"],
           "gap_pt": gaps, "widest": None}
    if widest is not None:
        voices = sorted((v for v in report.get("heldout_per_voice", [])
                         if not v["voice"].startswith("(") and WIDEST in v["accuracy"]),
                        key=lambda v: v["accuracy"][WIDEST])
        pick = lambda v: {"voice": v["voice"], "examples": v["examples"], "accuracy": v["accuracy"][WIDEST]}  # noqa: E731
        row["widest"] = {"heldout_accuracy": widest["heldout_accuracy"],
                         "in_distribution_accuracy": widest["in_distribution_accuracy"],
                         "gap_pt": widest["gap_pt"], "within_goal": widest["gap_pt"] >= -goal_pt,
                         "lowest_voice": pick(voices[0]) if voices else None,
                         "highest_voice": pick(voices[-1]) if voices else None}
    return row


def markdown(result: dict) -> str:
    widths = sorted({w for r in result["rows"] for w in r["gap_pt"]}, key=float)
    lines = [f"Leave one engine out: {len(result['rows'])} reports; goal: width 1.0 within "
             f"{result['goal_pt']:g} pt of the in-distribution test",
             "",
             "| report | held out | model | epochs | channel aug. | input norm | engine balance | " + " | ".join(f"gap {w} (pt)" for w in widths)
             + " | width 1.0: held-out / in-dist. | goal | lowest voice | highest voice |",
             "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in widths) + " | --- | --- | --- | --- |"]
    voice = lambda v: "n/a" if v is None else f"{v['voice']} {100 * v['accuracy']:.2f} %"  # noqa: E731
    for r in result["rows"]:
        gaps = [f"{r['gap_pt'][w]:+.2f}" if w in r["gap_pt"] else "n/a" for w in widths]
        w1 = r["widest"]
        tail = (["n/a"] * 4 if w1 is None else
                [f"{100 * w1['heldout_accuracy']:.2f} / {100 * w1['in_distribution_accuracy']:.2f} %",
                 "met" if w1["within_goal"] else "not met", voice(w1["lowest_voice"]), voice(w1["highest_voice"])])
        lines.append(f"| `{r['file']}` | {r['engine']} ({r['heldout_examples']}) | {r['model']} | {r['epochs']} | "
                     f"{'yes' if r['channel_augment'] else 'no'} | {r['input_norm']} | {r['engine_balance']:g} | " + " | ".join(gaps + tail) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgekws.fileio import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", type=Path, nargs="+")
    ap.add_argument("--goal-pt", type=float, default=5.0, help="the largest acceptable gap at width 1.0, in points")
    ap.add_argument("--out", type=Path, default=RESULTS / "loeo_summary.json",
                    help="results file; the Markdown table goes beside it (.md)")
    args = ap.parse_args()
    if not args.goal_pt >= 0:
        raise SystemExit(f"--goal-pt must be a non-negative number of points, got {args.goal_pt}")
    rows = []
    for path in args.reports:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(f"{path}: not a readable loeo report ({err})")
        try:
            rows.append(summarise(report, path.name, args.goal_pt))
        except (KeyError, TypeError, AttributeError) as err:
            raise SystemExit(f"{path}: not a loeo report: missing or malformed field {err}")
    result = {"benchmark": "loeo_summary", "date": time.strftime("%Y-%m-%d"), "goal_pt": args.goal_pt, "rows": rows}
    text = markdown(result)
    print(text, end="")
    write_text_atomic(args.out, json.dumps(result, indent=1, sort_keys=True) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), text)


if __name__ == "__main__":
    main()
