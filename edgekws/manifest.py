"""Reading an export folder's `manifest.json` as the consumers of exports (profile, bench) need it.

A manifest is written by `edgekws export`, but users copy, edit and hand export folders around:
this reader checks the fields downstream commands use, so a damaged one is a one-line error
naming the file and the field instead of a `KeyError` deep inside a measurement.
"""

from __future__ import annotations

from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.fileio import load_json, shown_key, typed


def load_manifest(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise EdgeKWSError(f"'{folder}' is not an export folder (no manifest.json); run `edgekws export` first")
    m = load_json(path, "manifest")
    where = str(path)
    typed(m, "name", str, where)
    acc = typed(m, "accounting", dict, where)
    typed(acc, "params", int, where, lo=0, prefix="accounting.")
    typed(acc, "macs", int, where, lo=0, prefix="accounting.")
    val = typed(m, "validation", dict, where)
    accuracy = typed(val, "accuracy", dict, where, prefix="validation.")
    for k in list(accuracy):
        typed(accuracy, k, float, where, lo=0, hi=1, prefix="validation.accuracy.")
    quant = typed(m, "quantization", dict, where, default={})
    for fmt, q in quant.items():
        if not isinstance(q, dict):
            raise EdgeKWSError(f"{where}: key 'quantization.{shown_key(fmt)}' must be a table")
        if "output" in q:
            out = typed(q, "output", dict, where, prefix=f"quantization.{fmt}.")
            typed(out, "scale", float, where, positive=True, prefix=f"quantization.{fmt}.output.")
    return m
