"""Devices: where benchmark suites and profiles run the on-board runner.

Each kind is registered with the URL form it answers to and a factory; `make_device(url)` picks
the first that matches. Kinds import lazily (the qemu one needs the sysroot helpers, the ssh one
nothing beyond the standard library), and nothing here imports `bench` or `profile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekws.devices.base import RUNNER, Device, DeviceError, missing_runtimes
from edgekws.errors import EdgeKWSError

__all__ = ["RUNNER", "Device", "DeviceError", "DeviceKind", "KINDS", "make_device", "missing_runtimes"]


@dataclass(frozen=True)
class DeviceKind:
    form: str  # the URL form, as users write it
    matches: Callable[[str], bool]
    make: Callable[..., Device]  # (url, options) -> Device


def _local(url: str, opts: dict) -> Device:
    from edgekws.devices.local import LocalDevice

    return LocalDevice(url)


def _ssh(url: str, opts: dict) -> Device:
    from edgekws.devices.ssh import SSHDevice

    return SSHDevice(url, identity=opts.get("identity"), known_hosts=opts.get("known_hosts"),
                     python=opts.get("remote_python") or "python3")


def _qemu(url: str, opts: dict) -> Device:
    from edgekws.devices.qemu import QemuDevice

    dev = QemuDevice(url)
    if opts.get("sysroot"):  # a base folder holding one sysroot per release
        dev.sysroot = Path(opts["sysroot"]) / dev.release
    dev.check()
    return dev


KINDS: tuple[DeviceKind, ...] = (
    DeviceKind("local", lambda u: u == "local", _local),
    DeviceKind("ssh://[user@]host[:port]", lambda u: u.startswith("ssh://"), _ssh),
    DeviceKind("qemu-aarch64[:CPU][@RELEASE]", lambda u: u.split(":")[0].split("@")[0] == "qemu-aarch64", _qemu),
)


def make_device(url: str, identity: str | None = None, known_hosts: str | None = None,
                remote_python: str = "python3", sysroot: str | None = None) -> Device:
    opts = {"identity": identity, "known_hosts": known_hosts, "remote_python": remote_python, "sysroot": sysroot}
    for kind in KINDS:
        if kind.matches(url):
            return kind.make(url, opts)
    raise EdgeKWSError(f"unknown device '{url}' (valid: {', '.join(k.form for k in KINDS)})")
