"""Leave-one-engine-out: does a model trained on some TTS engines recognise another?

Users deploy on human speech, which no TTS engine reproduces; the nearest measurable proxy here is
generalisation to an engine the model never heard. `edgekws loeo --engine flite` does it in one
command:

1. `holdout_views(corpus, engine)` writes two GSC-layout folders of symlinks, built under
   temporary names and renamed into place:
   - `train/` — the corpus without the engine's clips (train, validation and testing lists are the
     corpus's lists minus those clips), so the in-distribution test is still unseen voices;
   - `heldout/` — only the engine's clips, all of them listed in `testing_list.txt` (flite and
     festival train only in the default corpus, so their clips come from its train split: none
     of them was seen by the held-out model).
2. A supernet is trained on `train/` with the given recipe;
3. every width is evaluated on both, and the gap (held-out − in-distribution) reported.

The engine of each clip comes from the corpus's `meta.csv` (written by `edgekws data synth`).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgekws.data import BACKGROUND_DIR, LIST_FILES, clip_column
from edgekws.errors import DataError, EdgeKWSError
from edgekws.fileio import atomic_dir, ensure_writable_dir, load_json, read_text, write_json_atomic

VIEWS_RECORD = "views.json"  # what a views folder holds out, and from which corpus


def clip_engines(corpus: Path) -> dict[str, str]:
    """path → engine, from the corpus's meta.csv."""
    return clip_column(corpus, "engine")


SILENCE_GROUP = "(silence)"  # silence cuts come from the background recordings, not from a voice


def per_voice(held: dict, voices: dict[str, str]) -> list[dict]:
    """Held-out accuracy per voice and width, from `evaluate_checkpoint(..., predictions=True)`:
    which of the unheard engine's voices the model fails on. A clip missing from meta.csv (a
    silence cut) counts under `SILENCE_GROUP`."""
    import numpy as np

    groups = np.array([voices.get(k, SILENCE_GROUP) for k in held["keys"]])
    targets = np.asarray(held["targets"])
    out = []
    for voice in sorted(set(groups.tolist())):
        rows = groups == voice
        out.append({"voice": voice, "examples": int(rows.sum()),
                    "accuracy": {r["width"]: round(float((np.asarray(r["predictions"])[rows] == targets[rows]).mean()), 4)
                                 for r in held["results"]}})
    return out


def _link_tree(corpus: Path, dest: Path, clips: list[str], lists: dict[str, list[str]]) -> None:
    for rel in clips:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink((corpus / rel).resolve(), dest / rel)
    noise = corpus / BACKGROUND_DIR
    if noise.is_dir():
        os.symlink(noise.resolve(), dest / BACKGROUND_DIR)
    os.symlink((corpus / "meta.csv").resolve(), dest / "meta.csv")  # each clip's engine: --engine-balance
    for split, paths in lists.items():
        (dest / LIST_FILES[split]).write_text("".join(p + "\n" for p in sorted(paths)))


def holdout_views(corpus: Path, engine: str, out: Path, force: bool = False) -> dict:
    """Write `out/train` (corpus minus `engine`) and `out/heldout` (only `engine`); return counts."""
    corpus = Path(corpus)
    engines = clip_engines(corpus)
    known = sorted(set(engines.values()))
    if engine not in known:
        raise EdgeKWSError(f"engine '{engine}' is not in {corpus / 'meta.csv'} (valid: {', '.join(known)})")
    present = {p for p in engines if (corpus / p).is_file()}
    if not present:
        raise DataError(f"'{corpus}': none of the clips in meta.csv exist")
    lists = {}
    for split, fname in LIST_FILES.items():
        lf = corpus / fname
        lists[split] = set(read_text(lf, "list file").split()) if lf.is_file() else set()
    keep = sorted(p for p in present if engines[p] != engine)
    held = sorted(p for p in present if engines[p] == engine)
    if not keep or not held:
        raise EdgeKWSError(f"holding out '{engine}' leaves {len(keep)} training and {len(held)} held-out clips")
    counts = {"engine": engine, "corpus": str(corpus.resolve()), "train_clips": len(keep), "heldout_clips": len(held),
              "engines": {e: sum(1 for p in present if engines[p] == e) for e in known}}
    with atomic_dir(Path(out), overwrite=force) as tmp:
        _link_tree(corpus, tmp / "train", keep, {s: [p for p in keep if p in ps] for s, ps in lists.items()})
        _link_tree(corpus, tmp / "heldout", held, {"testing": held})
        write_json_atomic(tmp / VIEWS_RECORD, counts)
    return counts


def reusable_views(corpus: Path, engine: str, views: Path) -> dict:
    """The record of views made earlier, if they hold out `engine` from `corpus`; else a clear error."""
    try:
        rec = load_json(views / VIEWS_RECORD, "views record")
    except EdgeKWSError:
        raise EdgeKWSError(f"'{views}' exists but is not a held-out view made by edgekws (use --force to rebuild it)") from None
    if rec.get("engine") != engine or rec.get("corpus") != str(Path(corpus).resolve()):
        raise EdgeKWSError(f"'{views}' holds out '{rec.get('engine')}' from '{rec.get('corpus')}', not '{engine}' "
                           f"from '{Path(corpus).resolve()}' (use --force to rebuild it, or another --out)")
    return {**rec, "reused": True}


def leave_one_engine_out(corpus: Path, engine: str, out: Path, cfg, cache_dir: Path | None = None,
                         threads: int | None = None, resume: bool = False, force: bool = False,
                         log=print, on_step=None) -> dict:
    """Hold out `engine`, train `cfg` on the rest, evaluate every width on both; write `out/loeo.json`."""
    from edgekws.checkpoint import load_checkpoint
    from edgekws.evaluate import evaluate_checkpoint
    from edgekws.recipe import TrainConfig
    from edgekws.train import train

    out = Path(out)
    views = out / "views"
    ensure_writable_dir(out)
    if views.exists() and not force:
        counts = reusable_views(corpus, engine, views)
        if cfg.engine_balance and not (views / "train" / "meta.csv").exists():
            raise EdgeKWSError(f"'{views}' was made before --engine-balance and has no meta.csv (use --force to rebuild it)")
    else:
        counts = holdout_views(corpus, engine, views, force=force)
    ckpt = out / f"supernet_without_{engine}.pt"
    if resume and ckpt.exists():
        done = load_checkpoint(ckpt)
        ran = TrainConfig.recorded(done.train_config, known_only=True).to_dict()  # knobs it predates: as they ran
        differ = sorted(k for k, v in cfg.to_dict().items() if ran[k] != v)
        if differ:  # a finished run of another recipe is not this one's result
            raise EdgeKWSError(f"{ckpt} was trained with other settings ({', '.join(differ)}); give another --out, "
                               "or drop --resume to retrain it")
        metrics = done.metrics
    else:
        metrics = train(views / "train", ckpt, cfg, cache_dir=cache_dir, resume=resume, log=log, on_step=on_step,
                        threads=threads).metrics
    test = metrics.get("test", {})
    held = evaluate_checkpoint(ckpt, views / "heldout", cache_dir=cache_dir, predictions=True)
    try:  # the breakdown is extra: a meta.csv without voices must not cost the run its report
        voices = clip_column(corpus, "voice")
    except DataError:
        voices = {}
    rows = []
    for r in held["results"]:
        ind = test.get(f"width_{r['width']}", {}).get("accuracy")
        rows.append({"width": r["width"], "name": r["name"], "heldout_accuracy": r["accuracy"],
                     "in_distribution_accuracy": ind,
                     "gap_pt": round(100 * (r["accuracy"] - ind), 2) if ind is not None else None})
    report = {"engine": engine, "corpus": str(corpus), "checkpoint": str(ckpt), "views": counts,
              "heldout_examples": held["examples"], "train_config": cfg.to_dict(), "rows": rows,
              "heldout_per_voice": per_voice(held, voices) if voices else [],
              "train_seconds": metrics.get("train_seconds"), "train_machines": metrics.get("machines"),
              "in_distribution": "the corpus's testing split without the held-out engine (unseen voices)"}
    write_json_atomic(out / "loeo.json", report)
    return report
