"""`edgekws eval`: accuracy of a trained supernet per width (and per depth) on any GSC-layout
folder, with a confusion-matrix PNG. Only `testing_list.txt` is needed in the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekws.checkpoint import load_checkpoint
from edgekws.data import SpeechCommands, load_split
from edgekws.errors import EdgeKWSError
from edgekws.spec import SubnetSpec


def confusion(targets: np.ndarray, preds: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (targets, preds), 1)
    return cm


def evaluate_checkpoint(checkpoint: Path, data_dir: Path, widths: list[float] | None = None,
                        depths: list[int] | None = None, spec: SubnetSpec | None = None,
                        split: str = "testing", cache_dir: Path | None = None, predictions: bool = False) -> dict:
    """Accuracy and confusion of each asked-for subnet on a split; with `predictions`, also each
    example's predicted class index per row and the split's example keys and targets (in the same
    order), for breakdowns the caller makes (e.g. per voice in `edgekws.holdout`)."""
    from edgekws.alloc import keep_freed_memory
    from edgekws.train import evaluate_spec

    keep_freed_memory()  # every width and depth asked for, each a pass over the split: see edgekws.alloc
    ck = load_checkpoint(checkpoint)
    protocol = str(ck.train_config.get("protocol", "12"))
    ds = SpeechCommands.open(data_dir, protocol, int(ck.train_config.get("seed", 0)))
    if tuple(ds.protocol.labels) != tuple(ck.labels):
        raise EdgeKWSError(f"checkpoint labels {list(ck.labels)} differ from protocol {protocol}'s labels")
    data = load_split(ds, split, ck.features, cache_dir)
    model = ck.supernet()
    space = ck.space
    if spec is not None:
        runs = [("spec", "-", ck.pick(spec))]
    elif ck.only_spec is not None:  # a twin or a fine-tuned subnet: its one spec (others refused)
        runs = [("spec" if w is None else f"{w:g}", "max" if dd is None else str(dd), ck.pick(None, w, dd))
                for w in (widths or [None]) for dd in (depths or [None])]
    else:
        ws = widths or list(space.width_multipliers)
        ds_ = depths or [None]
        runs = [(f"{w:g}", "max" if dd is None else str(dd), space.uniform(w, dd)) for w in ws for dd in ds_]
    calib = ck.calibration_features() if ck.calibration is not None else None
    rows = []
    for wl, dl, s in runs:
        acc, preds = evaluate_spec(model, s, data, calib)
        rows.append({"width": wl, "depth": dl, "name": s.name, "spec": s.to_dict(), "accuracy": round(acc, 4),
                     "confusion": confusion(data.targets, preds, len(ck.labels)).tolist(),
                     **({"predictions": preds.tolist()} if predictions else {})})
    report = {"checkpoint": str(checkpoint), "data_dir": str(data_dir), "split": split, "examples": len(data.targets),
              "bn": "recalibrated per subnet on the checkpoint's calibration set" if calib is not None else "as stored",
              "labels": list(ck.labels), "results": rows}
    if predictions:
        report.update(keys=list(data.keys), targets=np.asarray(data.targets).tolist())
    return report


def plot_confusions(report: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekws.fileio import atomic_path

    rows = report["results"]
    labels = report["labels"]
    cols = min(2, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    side = max(4.5, 0.38 * len(labels))  # inches per panel: cells stay legible for 35 labels
    text = max(6.0, min(10.0, 110 / len(labels)))  # points
    fig, axes = plt.subplots(nrows, cols, figsize=(side * cols + 1.2, side * nrows), squeeze=False,
                             layout="constrained")
    im = None
    for ax, row in zip(axes.flat, rows):
        cm = np.array(row["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=text)
        ax.set_yticks(range(len(labels)), labels, fontsize=text)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=text * 0.8,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_title(f"width {row['width']} depth {row['depth']}: {100 * row['accuracy']:.2f}%\n{row['name']}",
                     fontsize=text + 1)
        ax.set_xlabel("predicted", fontsize=text + 1)
        ax.set_ylabel("true", fontsize=text + 1)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="fraction of the true class")
    with atomic_path(Path(dest)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
