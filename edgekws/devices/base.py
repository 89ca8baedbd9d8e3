"""What every device is: where the on-board runner runs, how files get there, how it is run.

A device kind is a small piece in its own module (`local`, `ssh`, `qemu`); `make_device(url)` in
the package picks one by its URL. `bench` and `profile` use devices; devices use neither, so the
layers import one way only.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "runner.py"  # the self-contained on-board runner

# Run by the device's Python before anything is copied (the pre-flight check).
PROBE_CODE = ("import json, platform, importlib\nout = {'machine': platform.machine(), 'python': platform.python_version()}\n"
              "for m in ('numpy', 'ai_edge_litert', 'tflite_runtime', 'onnxruntime'):\n"
              "    try:\n        mod = importlib.import_module(m + ('.interpreter' if 'lite' in m else ''))\n"
              "        out[m] = getattr(importlib.import_module(m), '__version__', 'present')\n"
              "    except Exception as e:\n        out[m] = None\n"
              "print(json.dumps(out))")
# Modules that provide each runtime on a device (any one is enough).
RUNTIME_MODULES = {"litert": ("ai_edge_litert", "tflite_runtime"), "onnxruntime": ("onnxruntime",)}


def parse_probe(res: subprocess.CompletedProcess, name: str) -> dict:
    """The JSON a device's Python printed for PROBE_CODE, or a DeviceError saying why not."""
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise DeviceError(f"{name}: its Python failed (exit {res.returncode}): {res.stderr.strip()[-200:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise DeviceError(f"{name}: its Python printed no JSON") from None


def missing_runtimes(found: dict, runtimes: list[str]) -> list[str]:
    """What a probed device lacks to run `runtimes` (numpy included)."""
    missing = [] if found.get("numpy") else ["numpy"]
    return missing + [rt for rt in runtimes if not any(found.get(m) for m in RUNTIME_MODULES[rt])]


class DeviceError(Exception):
    """A transport or board failure (retried), as opposed to a bad model (recorded at once)."""


@dataclass
class Device:
    """Where the runner runs. `prepare` gets the files a suite needs, keyed by a relative path that
    is unique per file (`<subnet>/<file>`: every export folder has a `model_int8.tflite`);
    `remote_path(rel)` is where the runner finds one; `run(args)` returns the runner's JSON."""

    url: str
    emulated = False

    @property
    def name(self) -> str:
        return self.url

    @property
    def note(self) -> str | None:
        return None

    def prepare(self, files: dict[str, Path]) -> None: ...

    def remote_path(self, rel: str) -> str: ...

    def python_command(self, code: str, timeout: float) -> subprocess.CompletedProcess: ...

    def probe(self, timeout: float = 300) -> dict:
        """What the device's Python reports: machine, Python version, and the version of each
        runtime module it can import (None when it cannot). Copies nothing."""
        return parse_probe(self.python_command(PROBE_CODE, timeout), self.name)

    def run(self, args: list[str], timeout: float) -> dict: ...
