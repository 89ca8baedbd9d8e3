"""`qemu-aarch64[:CPU][@RELEASE]`: the runner on emulated 64-bit Arm (see `edgekws.emulation`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekws.devices.local import LocalDevice
from edgekws.emulation import (DEFAULT_CPU, DEFAULT_RELEASE, QEMU, _need, default_sysroot, get_release,
                               hide_host_cpu_topology, qemu_command, qemu_environment)
from edgekws.errors import EdgeKWSError


@dataclass
class QemuDevice(LocalDevice):
    """`qemu-aarch64[:CPU][@RELEASE]`: the runner on emulated aarch64 (default cortex-a72, bookworm).

    Files need no copying (qemu-user sees the host's file system), so it shares the local device's
    paths; only the command and environment differ. Rows are marked `emulated` and their latency
    and memory `not meaningful`."""

    sysroot: Path | None = None  # this release's sysroot (default: under sysroot_base())
    cpu: str = DEFAULT_CPU
    release: str = DEFAULT_RELEASE
    emulated = True

    def __post_init__(self) -> None:
        super().__post_init__()
        head, _, rel = self.url.partition("@")
        head, _, cpu = head.partition(":")
        if head != QEMU:
            raise EdgeKWSError(f"device '{self.url}' is not qemu-aarch64[:CPU][@RELEASE]")
        self.cpu = cpu or self.cpu
        self.release = get_release(rel or self.release).name
        self.sysroot = Path(self.sysroot or default_sysroot(self.release))

    @property
    def name(self) -> str:
        return f"{QEMU}:{self.cpu}" + (f"@{self.release}" if self.release != DEFAULT_RELEASE else "")

    @property
    def note(self) -> str:
        return f"emulated aarch64 ({self.cpu}, Debian {self.release}, qemu-user): latency and memory are not meaningful"

    def check(self) -> None:
        if not (self.sysroot / "root/usr/bin/python3").exists():
            what = "" if self.release == DEFAULT_RELEASE else f" --release {self.release}"
            raise EdgeKWSError(f"no arm64 {self.release} sysroot at {self.sysroot}: run `make arm` (or `edgekws qemu setup{what}`)")
        _need(QEMU, "qemu-user")
        listed = subprocess.run([QEMU, "-cpu", "help"], capture_output=True, text=True).stdout.split()
        cpus = [c for c in listed if c not in ("Available", "CPUs:")]
        if self.cpu not in cpus:
            raise EdgeKWSError(f"unknown qemu CPU '{self.cpu}' (valid: {', '.join(cpus)})")

    def prepare(self, files: dict[str, Path]) -> None:
        self.check()
        hide_host_cpu_topology(self.sysroot / "root")
        super().prepare(files)

    def command(self) -> list[str]:
        return qemu_command(self.sysroot)

    def environment(self) -> dict[str, str]:
        return qemu_environment(self.sysroot, self.cpu)

    def probe(self, timeout: float = 300) -> dict:
        hide_host_cpu_topology(self.sysroot / "root")
        return super().probe(timeout)
