"""Latency *estimated* without a board: count the aarch64 instructions one inference executes
under qemu-user, then turn the count into milliseconds with a per-CPU factor.

Why counts: qemu-user translates every instruction, so its wall time says nothing about a board.
The number of instructions is different: it is fixed by the model, the runtime's kernels and the
CPU features qemu advertises (XNNPACK takes its dot-product kernels on cortex-a76, not on
cortex-a53), and it repeats to within a few thousand instructions run to run once nothing in the
process spins on a timer (OpenBLAS's idle worker threads do: the count runs with one BLAS thread
and a fixed hash seed).

How: the on-board runner runs the model twice in emulation with a counting TCG plugin
(`edgekws/native/insn_count.c`, built by `edgekws qemu setup`), once with `LOW` and once with
`HIGH` timed inferences; the difference divided by `HIGH - LOW` is the count of one inference,
the Python interpreter's start-up and the runtime's load cancelling out.

From count to time: `ms = instructions / (ipc × clock_ghz × 1e6)`. The instructions-per-cycle
factor is calibrated per core type from a published measurement of a model we can count (see
`CALIBRATION`); a core type without one borrows another's factor and the estimate says so.
Every figure from here is reported as *estimated*, with the source named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekws.errors import EdgeKWSError

PLUGIN_SOURCE = Path(__file__).resolve().parent / "native" / "insn_count.c"
# The QEMU plugin API header comes from the source of the very qemu Debian ships (bookworm: 7.2),
# downloaded once from the Debian archive by `edgekws qemu setup`; the header is not packaged.
QEMU_SOURCE_URL = "http://deb.debian.org/debian/pool/main/q/qemu/qemu_7.2+dfsg.orig.tar.xz"
QEMU_HEADER = "include/qemu/qemu-plugin.h"
LOW, HIGH = 5, 25  # timed inferences in the two counting runs


@dataclass(frozen=True)
class CpuFactor:
    """Instructions per cycle for one core type, and where the figure comes from."""

    ipc: float
    source: str
    calibrated: bool  # False: borrowed from another core type (the estimate says so)


# MLPerf Tiny v1.0, keyword spotting, DS-CNN int8 (our `dscnn_mlperf` family, 2.55 M MACs):
# 0.938 ms on one Cortex-A53 core of an NXP i.MX 8M Plus at 1.8 GHz = 1.688 M cycles. Counted
# here (LiteRT 2.3 int8, XNNPACK, qemu cortex-a53): 1.834 M instructions per inference
# (benchmarks/results/qemu_insn_calibration.json) → 1.09 instructions per cycle.
A53_REFERENCE = {"ms": 0.938, "clock_ghz": 1.8, "family": "dscnn_mlperf", "precision": "int8",
                 "source": "MLPerf Tiny v1.0 KWS DS-CNN int8, 0.938 ms, NXP i.MX 8M Plus (Cortex-A53 @ 1.8 GHz)"}
A53_IPC = 1.087
CALIBRATION: dict[str, CpuFactor] = {
    "cortex-a53": CpuFactor(A53_IPC, A53_REFERENCE["source"], True),
    # No published figure for a model we can count on these cores: they get the A53's factor.
    # Both are out-of-order and retire more per cycle than the in-order A53, so their estimates
    # are pessimistic (too slow) — a budget met by the estimate is met on the board.
    "cortex-a72": CpuFactor(A53_IPC, "Cortex-A53 factor (no A72 calibration): pessimistic", False),
    "cortex-a76": CpuFactor(A53_IPC, "Cortex-A53 factor (no A76 calibration): pessimistic", False),
}


def qemu_cpu(cpu: str) -> str:
    """A target's `cpu = "Cortex-A53"` as qemu's CPU model name."""
    name = cpu.strip().lower()
    if name not in CALIBRATION:
        raise EdgeKWSError(f"no instruction-count estimate for CPU '{cpu}' (estimates exist for "
                           f"{', '.join(CALIBRATION)})")
    return name


def estimate_ms(instructions: float, cpu: str, clock_ghz: float) -> float:
    factor = CALIBRATION[qemu_cpu(cpu)]
    return instructions / (factor.ipc * clock_ghz * 1e6)


# --------------------------------------------------------------------------------------------
# The plugin

def plugin_path() -> Path:
    from edgekws.emulation import sysroot_base

    return sysroot_base() / "plugins" / "libinsn_count.so"


def build_plugin(force: bool = False, log=print) -> Path:
    """Compile the counting plugin once (gcc, the qemu 7.2 plugin header from the Debian source
    archive). Idempotent; the .so is replaced by rename."""
    from edgekws.fileio import ensure_writable_dir

    dest = plugin_path()
    if dest.exists() and not force and dest.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return dest
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise EdgeKWSError("building the instruction-count plugin needs a C compiler: apt-get install gcc")
    ensure_writable_dir(dest.parent)
    with tempfile.TemporaryDirectory(prefix=".plugin-", dir=dest.parent) as tmp:
        tmp = Path(tmp)
        header = dest.parent / "qemu-plugin.h"
        if not header.exists():
            log(f"downloading the qemu 7.2 source for its plugin header ({QEMU_SOURCE_URL})")
            archive = tmp / "qemu.tar.xz"
            try:
                subprocess.run(["curl", "-fsSL", "--retry", "3", "-o", str(archive), QEMU_SOURCE_URL], check=True,
                               capture_output=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
                raise EdgeKWSError(f"cannot download {QEMU_SOURCE_URL}: {getattr(exc, 'stderr', b'') or exc}") from None
            with tarfile.open(archive) as tar:
                member = next((m for m in tar.getmembers() if m.name.endswith("/" + QEMU_HEADER) and m.isfile()), None)
                if member is None:
                    raise EdgeKWSError(f"{QEMU_SOURCE_URL} has no {QEMU_HEADER}")
                data = tar.extractfile(member).read()
            part = tmp / "qemu-plugin.h"
            part.write_bytes(data)
            os.replace(part, header)
        out = tmp / "libinsn_count.so"
        proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-Wall", "-I", str(header.parent), "-o", str(out),
                               str(PLUGIN_SOURCE)], capture_output=True, text=True)
        if proc.returncode:
            raise EdgeKWSError(f"building the instruction-count plugin failed: {proc.stderr.strip()[-400:]}")
        os.replace(out, dest)
    return dest


# --------------------------------------------------------------------------------------------
# Counting

def _count_once(model: Path, runtime: str, cpu: str, runs: int, sysroot: Path, plugin: Path, timeout: float,
                write_bytecode: bool = False) -> int:
    from edgekws.emulation import QEMU, hide_host_cpu_topology, qemu_environment

    runner = Path(__file__).resolve().parent / "runner.py"
    hide_host_cpu_topology(Path(sysroot) / "root")
    env = qemu_environment(sysroot, cpu)
    # Bytecode from counting's own cache only, and none written while counting: the two runs of a
    # count must import the same way, or one counts compiling modules the other loaded. A fresh
    # sysroot has no bytecode, and the sysroot's own __pycache__ folders can change under a count
    # (another emulated run writes them; a test deletes them): a 5-inference run once compiled
    # what its 25-inference run then loaded and counted 1,301 M instructions against 721 M.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0",
               PYTHONPYCACHEPREFIX=str(_bytecode_cache(sysroot)))
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    with tempfile.TemporaryDirectory(prefix="edgekws-insn-") as tmp:
        count_file = Path(tmp) / "count"
        cmd = [QEMU, "-plugin", f"{plugin},out={count_file}", str(Path(sysroot) / "root/usr/bin/python3"), str(runner),
               "--one", "--model", str(model), "--runtime", runtime, "--threads", "1", "--warmup", "0", "--runs", str(runs)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgeKWSError(f"counting {model.name} under qemu ({cpu}) took over {timeout:.0f} s") from None
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        result = json.loads(lines[-1]) if lines else {}
        if proc.returncode or not result.get("ok", True) or "latency_ms" not in result or not count_file.exists():
            why = result.get("error") or proc.stderr.strip()[-300:] or f"exit {proc.returncode}"
            raise EdgeKWSError(f"counting {model.name} under qemu ({cpu}) failed: {why}")
        return int(count_file.read_text().strip())


def _bytecode_cache(sysroot: Path) -> Path:
    """Counting's own bytecode cache (PYTHONPYCACHEPREFIX): filled once per runtime by a warm-up
    run, then only read, so nothing outside counting changes what a count imports."""
    return Path(sysroot) / "insn-pycache"


def count_instructions(model: Path, runtime: str, cpu: str, sysroot: Path | None = None,
                       timeout: float = 600) -> dict:
    """Instructions one inference of `model` executes on emulated `cpu` (threads = 1)."""
    from edgekws.emulation import default_sysroot

    sysroot = Path(sysroot or default_sysroot())
    if not (sysroot / "root/usr/bin/python3").exists():
        raise EdgeKWSError(f"no arm64 sysroot at {sysroot}: run `make arm` (or `edgekws qemu setup`)")
    plugin = plugin_path()
    if not plugin.exists():
        raise EdgeKWSError(f"no instruction-count plugin at {plugin}: run `make arm` (or `edgekws qemu setup`)")
    cpu = qemu_cpu(cpu)
    warm = _bytecode_cache(sysroot) / f".warm-{runtime}"
    if not warm.exists():  # compiles what this runtime's runs import into the cache, once (not counted)
        _count_once(Path(model), runtime, cpu, 1, sysroot, plugin, timeout, write_bytecode=True)
        warm.parent.mkdir(parents=True, exist_ok=True)
        warm.touch()
    low = _count_once(Path(model), runtime, cpu, LOW, sysroot, plugin, timeout)
    high = _count_once(Path(model), runtime, cpu, HIGH, sysroot, plugin, timeout)
    if high <= low:
        raise EdgeKWSError(f"counting {Path(model).name} under qemu ({cpu}): {HIGH} inferences counted no more "
                           f"than {LOW} ({high:,} ≤ {low:,})")
    return {"instructions": round((high - low) / (HIGH - LOW)), "cpu": cpu, "runtime": runtime, "threads": 1,
            "runs": [LOW, HIGH], "totals": [low, high]}
