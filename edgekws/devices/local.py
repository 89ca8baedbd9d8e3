"""`local`: the runner on this machine, in a fresh child process per run."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgekws.devices.base import RUNNER, Device, DeviceError


@dataclass
class LocalDevice(Device):
    python: str = sys.executable

    def __post_init__(self) -> None:
        self._files: dict[str, Path] = {}

    def prepare(self, files: dict[str, Path]) -> None:
        self._files = dict(files)

    def remote_path(self, rel: str) -> str:
        return str(self._files[rel])

    def command(self) -> list[str]:
        return [self.python]

    def environment(self) -> dict[str, str] | None:
        return None

    def python_command(self, code: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*self.command(), "-c", code], capture_output=True, text=True, timeout=timeout,
                                  env=self.environment())
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.name}: Python timed out after {timeout:.0f} s") from None

    def run(self, args: list[str], timeout: float) -> dict:
        try:
            res = subprocess.run([*self.command(), str(RUNNER), *args], capture_output=True, text=True, timeout=timeout,
                                 env=self.environment())
        except subprocess.TimeoutExpired:
            raise DeviceError(f"runner timed out after {timeout:.0f} s") from None
        if res.returncode != 0:
            raise DeviceError(f"runner exit {res.returncode}: {res.stderr.strip()[-200:]}")
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError:
            raise DeviceError(f"runner printed no JSON: {res.stdout.strip()[-200:]}") from None
