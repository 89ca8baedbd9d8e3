"""`ssh://[user@]host[:port]`: a board reached with the system OpenSSH client."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from edgekws.devices.base import RUNNER, Device, DeviceError
from edgekws.errors import EdgeKWSError


@dataclass
class SSHDevice(Device):
    """A board reached with the system OpenSSH client (keys from --identity, ssh-agent or ~/.ssh)."""

    identity: str | None = None
    python: str = "python3"
    workdir: str = ".edgekws-bench"
    connect_timeout: int = 5
    known_hosts: str | None = None

    def __post_init__(self) -> None:
        u = urlparse(self.url)
        if u.scheme != "ssh" or not u.hostname:
            raise EdgeKWSError(f"device '{self.url}' is not ssh://[user@]host[:port]")
        try:
            port = u.port
        except ValueError:
            raise EdgeKWSError(f"device '{self.url}': the port must be a number between 1 and 65535") from None
        if port == 0:
            raise EdgeKWSError(f"device '{self.url}': the port must be a number between 1 and 65535")
        self.host, self.port, self.user = u.hostname, port or 22, u.username

    def _opts(self) -> list[str]:
        o = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=2",
             "-o", "ServerAliveCountMax=3", "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            o += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            o += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return o

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _ssh(self, command: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["ssh", *self._opts(), "-p", str(self.port), self.target, command],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"ssh to {self.host}:{self.port} timed out after {timeout:.0f} s") from None

    def prepare(self, files: dict[str, Path]) -> None:
        """Copy the runner and models as one tar stream over ssh: needs only `tar` on the board
        (no sftp subsystem, which small boards and dropbear often lack)."""
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(RUNNER), arcname=RUNNER.name)
            for rel, f in sorted(files.items()):
                tar.add(str(f), arcname=rel)
        wd = shlex.quote(self.workdir)
        try:
            res = subprocess.run(["ssh", *self._opts(), "-p", str(self.port), self.target,
                                  f"mkdir -p {wd} && tar -C {wd} -xf -"], input=buf.getvalue(), capture_output=True,
                                 timeout=120)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"copy to {self.host}:{self.port} timed out") from None
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip()[-200:]
            raise DeviceError(f"copy to {self.host}:{self.port}: {err or 'exit %d' % res.returncode}")

    def remote_path(self, rel: str) -> str:
        return f"{self.workdir}/{rel}"

    def python_command(self, code: str, timeout: float) -> subprocess.CompletedProcess:
        res = self._ssh(f"{shlex.quote(self.python)} -c {shlex.quote(code)}", timeout)
        if res.returncode == 255:
            raise DeviceError(f"ssh exit 255: {res.stderr.strip()[-200:]}")
        return res

    def run(self, args: list[str], timeout: float) -> dict:
        cmd = " ".join(shlex.quote(a) for a in [self.python, f"{self.workdir}/runner.py", *args])
        res = self._ssh(cmd, timeout)
        if res.returncode != 0:  # 255 = ssh itself failed: connection refused, dropped, reset
            raise DeviceError(f"ssh exit {res.returncode}: {res.stderr.strip()[-200:]}")
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError:
            raise DeviceError(f"runner printed no JSON: {res.stdout.strip()[-200:]}") from None
