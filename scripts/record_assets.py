"""Write edgekws/assets/MADE.json: how the shipped supernets and packs were made.

    python scripts/record_assets.py --corpus DIR --family kwt --command "edgekws train ..." [--pack-command "..."]

Only the named family's entry under `supernets` is rewritten (from its checkpoint); the other
families' entries, the packs' and any notes written by hand are kept. A MADE.json from before
kwt shipped (one `supernet` entry) is moved under `supernets` first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from edgekws.assets import ASSETS, DEFAULT_PACK, SHIPPED_SUPERNETS, load_pack, shipped_checkpoint
from edgekws.checkpoint import load_checkpoint
from edgekws.fileio import sha256_file, write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--family", choices=sorted(SHIPPED_SUPERNETS), default="dscnn")
    ap.add_argument("--command", required=True)
    ap.add_argument("--synth-command", default="")
    ap.add_argument("--pack-command", default="")
    args = ap.parse_args()
    path = shipped_checkpoint(args.family)
    ck = load_checkpoint(path)
    corpus = json.loads((args.corpus / "corpus.json").read_text())
    pack = load_pack(DEFAULT_PACK)
    made_path = ASSETS / "MADE.json"
    made = json.loads(made_path.read_text()) if made_path.exists() else {}
    supernets = made.pop("supernets", {})
    if "supernet" in made:
        old = made.pop("supernet")
        supernets.setdefault(old["family"], old)
    supernets[args.family] = {
        "file": path.name, "sha256": sha256_file(path), "format": torch.load(path, weights_only=True)["format"],
        "command": args.command, "family": ck.family, "arch": ck.arch, "seed": ck.train_config["seed"],
        "epochs": ck.train_config["epochs"], "train_config": ck.train_config,
        "train_seconds": ck.metrics["train_seconds"], "train_cpu_seconds": ck.metrics.get("train_cpu_seconds"),
        "train_examples": ck.metrics["train_examples"], "test_examples": ck.metrics.get("test_examples"),
        "test_accuracy": {k: v["accuracy"] for k, v in ck.metrics.get("test", {}).items()},
        "machine": "2-core x86_64 (Debian 12), CPU only",
    }
    made["supernets"] = dict(sorted(supernets.items()))
    # the corpus and pack entries are rewritten only when their commands are given (else kept)
    if args.synth_command or "corpus" not in made:
        made["corpus"] = {"command": args.synth_command, "seed": corpus["seed"], "clips": corpus["clips"],
                          "clips_per_split": corpus["clips_per_split"], "voices_per_split": corpus["voices_per_split"]}
    if args.pack_command or "pack" not in made:
        made["pack"] = {"file": DEFAULT_PACK.name, "sha256": sha256_file(DEFAULT_PACK), "command": args.pack_command,
                        "examples": len(pack), "with_audio": int(len(pack.waves)),
                        "source": "testing split, pinned order (seed 0)"}
    write_json_atomic(made_path, made)
    print(json.dumps(made, indent=2))


if __name__ == "__main__":
    main()
