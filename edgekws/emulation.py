"""64-bit Arm under emulation: an arm64 Debian sysroot for qemu-user (the device that runs the
on-board runner in it is `edgekws.devices.qemu`).

Why: most of our users' boards are Cortex-A53/A72/A76, and this build machine is x86. Running the
very runner and runtime wheels a board would use, on emulated aarch64, catches what x86 cannot:
an Arm-only kernel that rounds differently, a wheel that does not load, a runner that needs a
module a board lacks. It answers "does it give the same answers on Arm?" (int8 top-1 must be
identical to x86); it cannot answer "how fast?" — qemu-user translates every instruction, so
latency and memory rows from it are marked as not meaningful.

Two sysroots (`edgekws qemu setup`, `make arm`, ~40 s each), one per kind of board we meet:
- `bookworm` (default): Debian 12 arm64 (Raspberry Pi OS 12), Python 3.11, and aarch64 wheels of
  numpy, onnxruntime and ai-edge-litert at the versions this host runs, so the two machines differ
  only in architecture;
- `bullseye`: Debian 11 arm64 (Raspberry Pi OS 11, still on many lab boards), Python 3.9, numpy
  1.26, tflite-runtime 2.13 (the last with wheels for its glibc) and onnxruntime 1.19.2 (the last
  for Python 3.9) — the oldest stack the runner promises to run on.
Each is `root/` from `debootstrap --foreign --variant=minbase` (only the unpack stage: the second
stage would need binfmt_misc, which containers and CI rarely have; nothing here needs the packages
configured) plus the unpacked `python3` packages, `site/` with the wheels from PyPI
(`pip download --platform manylinux… --python-version …`), and `sysroot.json` (what, when, from
where). They live in `~/.cache/edgekws/qemu-aarch64/<release>` (or under $EDGEKWS_ARM_SYSROOT).

Without binfmt_misc, the runner's child processes cannot exec the aarch64 interpreter directly;
the device sets `EDGEKWS_RUNNER_EXEC_PREFIX` so they go through qemu too (see runner.py).

onnxruntime segfaults at import under qemu-user when it reads the host's x86 cache topology from
`/sys/devices/system/cpu/cpu*/cache` (measured: qemu 7.2, onnxruntime 1.32). qemu's `-L` prefix
only redirects paths that *exist* in the sysroot — a missing file falls through to the host — so
hiding means placing empty files there, one set per host CPU (`hide_host_cpu_topology`). This is
redone before every run, because the sysroot may be used on a machine with more CPUs than the one
that built it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekws.devices.base import PROBE_CODE, DeviceError, parse_probe
from edgekws.errors import EdgeKWSError
from edgekws.fileio import load_json, replace_dir

MIRROR = "http://deb.debian.org/debian"
QEMU = "qemu-aarch64"
DEFAULT_CPU = "cortex-a72"  # Raspberry Pi 4; cortex-a53 (Pi 3 / Zero 2 W) and cortex-a76 (Pi 5, dot-product) too
CACHE_FILES = ("level", "size", "shared_cpu_list", "type", "coherency_line_size", "ways_of_associativity")


@dataclass(frozen=True)
class Release:
    """A Debian arm64 release and the Python stack a board of that era runs."""

    name: str
    python: str  # the release's python3: wheels must match it, not the host's Python
    platforms: tuple[str, ...]  # manylinux tags its glibc can load
    packages: tuple[tuple[str, str], ...] = ()  # pinned; empty = the host's own runtime versions
    litert_module: str = "ai_edge_litert"

    def versions(self) -> dict[str, str]:
        return dict(self.packages) if self.packages else host_versions()


RELEASES = {
    "bookworm": Release("bookworm", "3.11", ("manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64",
                                             "manylinux_2_34_aarch64")),
    "bullseye": Release("bullseye", "3.9", ("manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64"),
                        (("numpy", "1.26.4"), ("tflite-runtime", "2.13.0"), ("onnxruntime", "1.19.2")), "tflite_runtime"),
}
DEFAULT_RELEASE = "bookworm"
HOST_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert")


def sysroot_base() -> Path:
    from edgekws.data import default_cache_dir

    return Path(os.environ.get("EDGEKWS_ARM_SYSROOT") or default_cache_dir() / "qemu-aarch64")


def default_sysroot(release: str = DEFAULT_RELEASE) -> Path:
    return sysroot_base() / release


def get_release(name: str) -> Release:
    if name not in RELEASES:
        raise EdgeKWSError(f"unknown Debian release '{name}' (valid: {', '.join(RELEASES)})")
    return RELEASES[name]


def host_versions() -> dict[str, str]:
    """Versions of the runtime packages on this host: the bookworm side gets the same ones."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in HOST_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            raise EdgeKWSError(f"'{name}' is not installed on this host; run `make setup` first") from None
    return out


def hide_host_cpu_topology(root: Path, host_sys: Path = Path("/sys/devices/system/cpu")) -> int:
    """Empty cache-description files in the sysroot for every host CPU (see the module docstring).
    Returns how many CPUs were covered."""
    cpus = sorted(p.name for p in host_sys.glob("cpu[0-9]*")) if host_sys.is_dir() else []
    for cpu in cpus:
        for index in range(4):
            d = root / "sys/devices/system/cpu" / cpu / "cache" / f"index{index}"
            d.mkdir(parents=True, exist_ok=True)
            for name in CACHE_FILES:
                (d / name).touch()
    return len(cpus)


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        raise EdgeKWSError(f"'{tool}' not found: install Debian's {package} (scripts/setup-system.sh does)")
    return path


def _run(cmd: list[str], what: str, log: Callable[[str], None], **kw) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or [f"exit {res.returncode}"]
        raise EdgeKWSError(f"{what} failed: {tail[0]}")
    log(f"{what}: {time.perf_counter() - t0:.1f} s")
    return res


def build_sysroot(dest: Path, release_name: str = DEFAULT_RELEASE, mirror: str = MIRROR, force: bool = False,
                  log: Callable[[str], None] = print) -> dict:
    """Build one release's arm64 sysroot at `dest` (in a temporary folder beside it, renamed at the
    end: an interrupted build leaves nothing half-made). Kept when it already has the wanted
    package versions."""
    rel = get_release(release_name)
    dest = Path(dest).resolve()  # debootstrap changes directory: relative paths would break
    versions = rel.versions()
    if (dest / "sysroot.json").exists() and not force:
        try:
            info = load_json(dest / "sysroot.json", "sysroot record")
        except EdgeKWSError as exc:
            info = {}
            log(f"{exc}: rebuilding")
        if info.get("packages") == versions:
            return info
        log(f"{rel.name} sysroot has {info.get('packages')}, wanted {versions}: rebuilding")
    debootstrap = _need("debootstrap", "debootstrap")
    _need(QEMU, "qemu-user")
    _need("dpkg-deb", "dpkg")
    if os.geteuid() != 0:
        raise EdgeKWSError("building the arm64 sysroot needs root (debootstrap creates device files and owners)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        root = tmp / "root"
        _run([debootstrap, "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3", rel.name, str(root), mirror],
             f"debootstrap {rel.name} arm64 (unpack stage)", log)
        debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
        for deb in debs:  # --include'd packages are only downloaded by the first stage: unpack them
            _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpack {deb.name}", lambda m: None)
            deb.unlink()
        log(f"unpacked {len(debs)} packages")
        if not (root / "usr/bin/python3").exists():
            raise EdgeKWSError(f"the {rel.name} arm64 sysroot has no usr/bin/python3 after unpacking")
        pins = [f"{name}=={v}" for name, v in versions.items()]
        target = ["--only-binary=:all:", *[a for p in rel.platforms for a in ("--platform", p)],
                  "--python-version", rel.python, "--implementation", "cp"]
        _run([sys.executable, "-m", "pip", "download", "-q", *target, "-d", str(tmp / "wheels"), *pins],
             "pip download aarch64 wheels (" + ", ".join(pins) + ")", log)
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", *target, "--target", str(tmp / "site"),
              *map(str, sorted((tmp / "wheels").glob("*.whl")))], "pip install --target site", log)
        shutil.rmtree(tmp / "wheels")
        info = {"release": rel.name, "arch": "arm64", "mirror": mirror, "python": rel.python, "packages": versions,
                "qemu": subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0],
                "built": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.machine(),
                "seconds": round(time.perf_counter() - t_start, 1)}
        hide_host_cpu_topology(tmp / "root")
        try:
            res = subprocess.run([*qemu_command(tmp), "-c", PROBE_CODE], capture_output=True, text=True,
                                 env=qemu_environment(tmp, DEFAULT_CPU), timeout=300)
            found = parse_probe(res, f"{QEMU}@{rel.name}")
        except (DeviceError, subprocess.TimeoutExpired) as exc:
            raise EdgeKWSError(f"the emulated Python did not start: {exc}") from None
        missing = [k for k in ("numpy", rel.litert_module, "onnxruntime") if found.get(k) is None]
        if found.get("machine") != "aarch64" or missing:
            raise EdgeKWSError(f"the emulated Python does not load {', '.join(missing) or 'as aarch64'}: {found}")
        info["probe"] = found
        (tmp / "sysroot.json").write_text(json.dumps(info, indent=2) + "\n")
        replace_dir(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return info


def qemu_command(sysroot: Path) -> list[str]:
    """The emulated Python of a sysroot, as a command line."""
    return [QEMU, str(Path(sysroot) / "root/usr/bin/python3")]


def qemu_environment(sysroot: Path, cpu: str) -> dict[str, str]:
    """The environment the emulated Python runs in: the sysroot as qemu's library prefix, its
    wheels on the path, the CPU model, and the exec prefix the runner's children need."""
    sysroot = Path(sysroot)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QEMU_LD_PREFIX=str(sysroot / "root"), QEMU_CPU=cpu, PYTHONPATH=str(sysroot / "site"),
               PYTHONNOUSERSITE="1", EDGEKWS_RUNNER_EXEC_PREFIX=json.dumps([QEMU]))
    return env
