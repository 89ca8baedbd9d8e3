"""Two leave-one-engine-out reports side by side: did a recipe change close the gap, and where?

    python benchmarks/loeo_compare.py BASE.json CANDIDATE.json [--out results/NAME.json] [--note TEXT]

Both files are `loeo.json` reports of `edgekws loeo` for the same held-out engine and corpus (this
refuses otherwise: a gap measured on other clips is not comparable). Prints, per width, the
held-out and in-distribution accuracy of each run, the change in each and in the gap; then, per
held-out voice, the change at every width. Each change carries ±2 standard errors of a difference
of two proportions on that many examples, computed as if the runs' errors were independent — they
are not (the same clips), so the band is conservative; a change inside it is noise at this size.
Writes a JSON and a Markdown table (default: benchmarks/results/loeo_compare.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _band_pt(p: float, q: float, n: int) -> float:
    """±2 standard errors, in points, of p − q for two independent proportions over n examples each."""
    return round(200 * math.sqrt((p * (1 - p) + q * (1 - q)) / max(n, 1)), 2)


def compare(base: dict, cand: dict) -> dict:
    """The per-width and per-voice changes from `base` to `cand` (two loeo.json reports)."""
    for key in ("engine", "heldout_examples"):
        if base.get(key) != cand.get(key):
            raise SystemExit(f"the reports differ in {key}: {base.get(key)!r} vs {cand.get(key)!r}; not comparable")
    rows = []
    cand_rows = {r["width"]: r for r in cand["rows"]}
    for b in base["rows"]:
        c = cand_rows.get(b["width"])
        if c is None:
            continue
        n = base["heldout_examples"]
        rows.append({
            "width": b["width"], "name": b["name"],
            "heldout": [b["heldout_accuracy"], c["heldout_accuracy"]],
            "heldout_delta_pt": round(100 * (c["heldout_accuracy"] - b["heldout_accuracy"]), 2),
            "heldout_band_pt": _band_pt(b["heldout_accuracy"], c["heldout_accuracy"], n),
            "in_distribution": [b["in_distribution_accuracy"], c["in_distribution_accuracy"]],
            "in_distribution_delta_pt": round(100 * (c["in_distribution_accuracy"] - b["in_distribution_accuracy"]), 2),
            "gap_pt": [b["gap_pt"], c["gap_pt"]],
            "gap_change_pt": round(c["gap_pt"] - b["gap_pt"], 2),
        })
    voices = []
    cand_voices = {v["voice"]: v for v in cand.get("heldout_per_voice", [])}
    for bv in base.get("heldout_per_voice", []):
        cv = cand_voices.get(bv["voice"])
        if cv is None:
            continue
        per_width = {}
        for w, acc in bv["accuracy"].items():
            if w in cv["accuracy"]:
                per_width[w] = {"accuracy": [acc, cv["accuracy"][w]],
                                "delta_pt": round(100 * (cv["accuracy"][w] - acc), 2),
                                "band_pt": _band_pt(acc, cv["accuracy"][w], bv["examples"])}
        voices.append({"voice": bv["voice"], "examples": bv["examples"], "widths": per_width})
    changed = {k: [base["train_config"].get(k), v] for k, v in cand["train_config"].items()
               if base["train_config"].get(k) != v}
    return {"benchmark": "loeo_compare", "engine": base["engine"], "heldout_examples": base["heldout_examples"],
            "recipe_changes": changed, "rows": rows, "per_voice": voices}


def markdown(result: dict, base_name: str, cand_name: str) -> str:
    lines = [f"Leave {result['engine']} out: `{base_name}` → `{cand_name}` "
             f"({result['heldout_examples']} held-out examples); recipe changes: "
             + (", ".join(f"`{k}` {'unset' if a is None else repr(a)} → {b!r}" for k, (a, b) in result["recipe_changes"].items()) or "none"),
             *(["", f"Note: {result['note']}"] if result.get("note") else []),
             "",
             "| width | held-out | Δ pt (±2 SE) | in-distribution | Δ pt | gap (pt) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['width']} | {100 * r['heldout'][0]:.2f} → {100 * r['heldout'][1]:.2f} % "
                     f"| {r['heldout_delta_pt']:+.2f} (±{r['heldout_band_pt']:.2f}) "
                     f"| {100 * r['in_distribution'][0]:.2f} → {100 * r['in_distribution'][1]:.2f} % "
                     f"| {r['in_distribution_delta_pt']:+.2f} | {r['gap_pt'][0]:+.2f} → {r['gap_pt'][1]:+.2f} |")
    if result["per_voice"]:
        widths = list(result["per_voice"][0]["widths"])
        lines += ["", "| voice | examples | " + " | ".join(f"width {w}: Δ pt (±2 SE)" for w in widths) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in widths) + " |"]
        for v in result["per_voice"]:
            cells = [f"{100 * v['widths'][w]['accuracy'][1]:.2f} % ({v['widths'][w]['delta_pt']:+.2f} "
                     f"±{v['widths'][w]['band_pt']:.2f})" if w in v["widths"] else "n/a" for w in widths]
            lines.append(f"| {v['voice']} | {v['examples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgekws.fileio import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS / "loeo_compare.json",
                    help="results file; the Markdown table goes beside it (.md)")
    ap.add_argument("--note", default="",
                    help="a sentence kept with the comparison (e.g. a change the reports' training configs do not "
                         "record, such as code that differed between the runs)")
    args = ap.parse_args()
    reports = []
    for path in (args.base, args.candidate):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise SystemExit(f"{path}: not a readable loeo report ({err})")
    try:
        result = compare(*reports)
    except (KeyError, TypeError) as err:
        raise SystemExit(f"not a loeo report: missing or malformed field {err}")
    result["date"] = time.strftime("%Y-%m-%d")
    result["files"] = [args.base.name, args.candidate.name]
    if args.note:
        result["note"] = args.note
    text = markdown(result, args.base.name, args.candidate.name)
    print(text, end="")
    write_text_atomic(args.out, json.dumps(result, indent=1, sort_keys=True) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), text)


if __name__ == "__main__":
    main()
