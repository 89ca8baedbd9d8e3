"""Write edgekws/assets/MADE.json: how the shipped supernet and pack were made.

    python scripts/record_assets.py --corpus DIR --command "edgekws train ..." [--pack-command "..."]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekws.assets import ASSETS, DEFAULT_CHECKPOINT, DEFAULT_PACK, load_pack
from edgekws.checkpoint import load_checkpoint
from edgekws.fileio import sha256_file, write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--synth-command", default="")
    ap.add_argument("--pack-command", default="")
    args = ap.parse_args()
    ck = load_checkpoint(DEFAULT_CHECKPOINT)
    corpus = json.loads((args.corpus / "corpus.json").read_text())
    pack = load_pack(DEFAULT_PACK)
    made = {
        "supernet": {
            "file": DEFAULT_CHECKPOINT.name, "sha256": sha256_file(DEFAULT_CHECKPOINT),
            "command": args.command, "family": ck.family, "seed": ck.train_config["seed"],
            "epochs": ck.train_config["epochs"], "train_config": ck.train_config,
            "train_seconds": ck.metrics["train_seconds"], "train_cpu_seconds": ck.metrics.get("train_cpu_seconds"),
            "train_examples": ck.metrics["train_examples"], "test_examples": ck.metrics.get("test_examples"),
            "test_accuracy": {k: v["accuracy"] for k, v in ck.metrics.get("test", {}).items()},
            "machine": "2-core x86_64 (Debian 12), CPU only",
        },
        "corpus": {"command": args.synth_command, "seed": corpus["seed"], "clips": corpus["clips"],
                   "clips_per_split": corpus["clips_per_split"], "voices_per_split": corpus["voices_per_split"]},
        "pack": {"file": DEFAULT_PACK.name, "sha256": sha256_file(DEFAULT_PACK), "command": args.pack_command,
                 "examples": len(pack), "with_audio": int(len(pack.waves)), "source": "testing split, pinned order (seed 0)"},
    }
    write_json_atomic(ASSETS / "MADE.json", made)
    print(json.dumps(made, indent=2))


if __name__ == "__main__":
    main()
