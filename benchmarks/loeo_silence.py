"""What a leave-one-engine-out run does with silence: kept as silence, or called a keyword?

    python benchmarks/loeo_silence.py --views DIR CHECKPOINT [CHECKPOINT ...] [--out results/NAME.json]

DIR is the `views` folder of any `edgekws loeo --engine E` run (`train/`, `heldout/`, `views.json`);
each CHECKPOINT a supernet trained without E (each `loeo` run's `supernet_without_E.pt`). One not
trained on a loeo train view is refused, and so is one whose training views record another engine
or corpus; where those views are gone, the result says `held_out_verified: false`. A change
that helps an unheard engine can cost the silence cuts (`--input-norm band_mean` removes the clip's
level, README Stage 3), and a silence cut called a *keyword* is a false accept — what a device's
user hears as a wrong wake — where one called `_unknown_` is rejected like silence. Neither the
accuracy nor `loeo.json`'s per-voice table separates the two, so this scores every width on both
views' silence cuts (the in-distribution test, `train/`, and the held-out engine's, `heldout/`) and
counts: accuracy on silence, and the share called a keyword. Also, on the
spoken clips, the share called silence (a missed word that the model took for no speech).

Writes a JSON and a Markdown table (default: benchmarks/results/loeo_silence.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
VIEWS = {"in-distribution": "train", "held-out": "heldout"}


def check_held_out(checkpoint: Path, views: Path) -> dict:
    """The views' engine, if `checkpoint` was trained on views of the same engine and corpus.
    Where its training views are gone (another machine, a deleted run), it is recorded as not
    verified rather than refused: the checkpoint alone does not list the clips it trained on."""
    from edgekws.checkpoint import load_checkpoint

    rec = json.loads((views / "views.json").read_text())
    ck = load_checkpoint(checkpoint)
    trained = Path(str(ck.train_config.get("data_dir", "")))
    if trained.name != "train" or trained.parent.name != "views":
        raise SystemExit(f"{checkpoint}: trained on '{trained}', not on the train view of an `edgekws loeo` run")
    own = trained.parent / "views.json"
    verified = own.is_file()
    if verified:
        theirs = json.loads(own.read_text())
        if (theirs.get("engine"), theirs.get("corpus")) != (rec["engine"], rec["corpus"]):
            raise SystemExit(f"{checkpoint}: trained without '{theirs.get('engine')}' of '{theirs.get('corpus')}', "
                             f"not without '{rec['engine']}' of '{rec['corpus']}'")
    return {"engine": rec["engine"], "held_out_verified": verified, "train_config": {k: ck.train_config.get(k) for k in
                                                      ("epochs", "channel_augment", "input_norm", "engine_balance", "seed")}}


def score(checkpoint: Path, views: Path, cache_dir: Path | None) -> dict:
    from edgekws.data import SILENCE, UNKNOWN
    from edgekws.evaluate import evaluate_checkpoint

    out = {"checkpoint": str(checkpoint), **check_held_out(checkpoint, views), "views": {}}
    for name, folder in VIEWS.items():
        r = evaluate_checkpoint(checkpoint, views / folder, cache_dir=cache_dir, predictions=True)
        sil_idx, unk_idx = r["labels"].index(SILENCE), r["labels"].index(UNKNOWN)
        keys, t = np.array(r["keys"]), np.asarray(r["targets"])
        silent = np.array([k.startswith(SILENCE + "/") for k in keys])
        rows = []
        for row in r["results"]:
            p = np.asarray(row["predictions"])
            called_word = (p[silent] != sil_idx) & (p[silent] != unk_idx)
            rows.append({"width": row["width"], "accuracy": row["accuracy"],
                         "silence_accuracy": round(float((p[silent] == t[silent]).mean()), 4),
                         "silence_called_keyword": round(float(called_word.mean()), 4),
                         "speech_called_silence": round(float((p[~silent] == sil_idx).mean()), 4)})
        out["views"][name] = {"examples": int(len(t)), "silence_cuts": int(silent.sum()), "rows": rows}
    return out


def markdown(result: dict) -> str:
    widths = [r["width"] for r in result["checkpoints"][0]["views"]["held-out"]["rows"]]
    per_width = " / ".join(widths)
    lines = ["Silence in leave-one-engine-out runs: accuracy on the silence cuts, the share of them called a "
             "keyword (a false accept; `_unknown_` is a rejection), and the share of spoken clips called silence, "
             f"at widths {per_width}", "",
             "| checkpoint's folder | recipe | view (silence cuts) | silence accuracy (%) | silence → keyword (%) "
             "| speech → silence (%) |",
             "| --- | --- | --- | --- | --- | --- |"]
    pct = lambda rows, k: " / ".join(f"{100 * r[k]:.2f}" for r in rows)  # noqa: E731
    for run in result["checkpoints"]:
        tc = run["train_config"]
        recipe = (f"{tc['epochs']} ep, input norm {tc['input_norm'] or 'none'}, channel aug. "
                  f"{'yes' if tc['channel_augment'] else 'no'}, engine balance {tc['engine_balance'] or 0:g}")
        for view, v in run["views"].items():
            lines.append(f"| `{Path(run['checkpoint']).parent.name}` | {recipe} | {view} ({v['silence_cuts']}) | "
                         f"{pct(v['rows'], 'silence_accuracy')} | {pct(v['rows'], 'silence_called_keyword')} | "
                         f"{pct(v['rows'], 'speech_called_silence')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgekws.fileio import write_json_atomic, write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--views", type=Path, required=True, help="the views folder of an `edgekws loeo` run")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "loeo_silence.json",
                    help="results file; the Markdown table goes beside it (.md)")
    args = ap.parse_args()
    if not (args.views / "views.json").is_file():
        raise SystemExit(f"{args.views}: not the views folder of an `edgekws loeo` run (no views.json)")
    for ck in args.checkpoints:
        if not ck.is_file():
            raise SystemExit(f"{ck}: no such checkpoint")
    from edgekws.errors import EdgeKWSError

    try:
        scored = [score(ck, args.views, args.cache_dir) for ck in args.checkpoints]
    except (EdgeKWSError, json.JSONDecodeError) as exc:  # a broken checkpoint, views or record: one line
        raise SystemExit(f"error: {exc}") from None
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "views": str(args.views),
              "checkpoints": scored}
    write_json_atomic(args.out, result)
    md = markdown(result)
    write_text_atomic(args.out.with_suffix(".md"), md)
    print(md, end="")


if __name__ == "__main__":
    main()
