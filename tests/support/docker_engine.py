"""A private Docker engine for the image test: Debian's `dockerd` started by the test with its own
data root, exec root and socket, stopped by its pid afterwards, and a Debian 12 base image made
locally with debootstrap (no registry is reachable from the machines the tests run on).

The data root lives in a cache folder outside the clone (DEMO_API_DOCKER_CACHE, default
~/.cache/demo-api/docker), so image layers persist between runs on the same machine: the first
build downloads PyTorch and its CUDA wheels (many minutes), later ones reuse the cached layers
while the requirements and the Dockerfile's steps before them are unchanged. One engine at a time
uses that folder (a lock), and an engine a killed run left behind is stopped by the pid it wrote.

The engine runs without iptables and without a bridge: containers and builds use the host's
network (`--network host`), the only one these machines allow.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("DEMO_API_DOCKER_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "demo-api" / "docker")
DEBIAN_SUITE = "bookworm"  # the Dockerfile's default base, debian:bookworm-slim, is this release
BASE_IMAGE = f"demo-api-test/debian:{DEBIAN_SUITE}-minbase"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
LOCK_WAIT_S = 1800  # another run on this machine holds the engine: wait for it (a cold build is long)
START_WAIT_S = 60
STOP_WAIT_S = 60
# The machine's own CA certificates (a TLS-inspecting egress proxy signs PyPI's certificates);
# copied into the base image so apt and pip inside a build trust what the host trusts.
LOCAL_CA_FOLDER = Path("/usr/local/share/ca-certificates")
APT_FOLDER = Path("/etc/apt")
# pip reads certifi's bundle, not the system's: point it at the system bundle, which holds LOCAL_CA_FOLDER
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"


def debian_only(sources: str) -> bool:
    """Whether an apt sources file names Debian's archives only (no third-party archive goes in)."""
    uris = re.findall(r"(?:^URIs:|^deb(?:-src)?\s+(?:\[[^]]*\]\s+)?)\s*(\S+)", sources, re.MULTILINE)
    return bool(uris) and all("debian.org/" in uri or "/debian" in uri for uri in uris)


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (not installed, no privileges, no overlay2); the reason is the message."""


class Engine:
    """One private dockerd; `docker(...)` runs the client against it, `env` is what docker.sh needs."""

    def __init__(self, root: Path = CACHE):
        self.root = root
        self.data_root = root / "data"
        self.exec_root = root / "exec"
        self.socket = root / "docker.sock"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.proc: subprocess.Popen | None = None
        self._lock: int | None = None

    @property
    def env(self) -> dict[str, str]:
        """The client's settings: this engine's socket, and the legacy builder (BuildKit would try
        to pull its frontend; the legacy builder needs no registry)."""
        return {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, check: bool = True, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], check=False, env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=timeout, **kwargs)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    # -- start and stop ------------------------------------------------------------------------------
    def start(self) -> Engine:
        missing = [tool for tool in ("dockerd", "docker", "debootstrap") if not shutil.which(tool)]
        if missing:
            raise EngineUnavailable(f"not installed: {', '.join(missing)} (bash tools/install-system-packages.sh)")
        if os.geteuid() != 0:
            raise EngineUnavailable("dockerd needs root here (no rootless setup)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._stop_leftover()
        self.exec_root.mkdir(exist_ok=True)
        handle = open(self.log, "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
             "--pidfile", str(self.pidfile), "-H", f"unix://{self.socket}", "--storage-driver=overlay2",
             "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        handle.close()
        deadline = time.monotonic() + START_WAIT_S
        while self.docker("info", check=False, timeout=30).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                reason = self.logs(1500)
                self.stop()
                raise EngineUnavailable(f"dockerd did not start:\n{reason}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Remove the containers left (a stopping dockerd would wait for each one's stop timeout,
        120 s for ours), then SIGTERM dockerd by its pid (it stops containerd); SIGKILL its session
        if it hangs."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                left = self.docker("ps", "--all", "--quiet", check=False, timeout=60).stdout.split()
                if left:
                    self.docker("rm", "--force", *left, check=False, timeout=300)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # dockerd and the containerd it started
                    self.proc.wait(10)
        finally:
            self.proc = None
            self._unmount_leftovers()
            if self._lock is not None:
                os.close(self._lock)  # closing releases the flock
                self._lock = None

    def _unmount_leftovers(self) -> None:
        """dockerd leaves its default network namespace mounted in the exec root once it exits;
        unmount it (only that path of ours) so the folder can be deleted."""
        netns = self.exec_root / "netns" / "default"
        if netns.exists() and os.path.ismount(netns):
            subprocess.run(["umount", str(netns)], check=False, capture_output=True, timeout=30)

    def logs(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def _take_lock(self) -> None:
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EngineUnavailable(f"another run holds {self.root} for {LOCK_WAIT_S} s") from None
                time.sleep(2)
        self._lock = fd

    def _stop_leftover(self) -> None:
        """A dockerd of a run that was killed still holds the data root: stop it by the pid it wrote,
        once /proc says that pid is a dockerd of this data root (never any other process)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if not cmdline or not cmdline[0].endswith(b"dockerd") or str(self.data_root).encode() not in cmdline:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def prune(self) -> None:
        """Delete the images no tag or container holds (an earlier build's stages and image, once
        rebuilt), so the cache folder keeps one generation. Tag what the next build should reuse
        (e.g. the build stage, `docker build --target build --tag ...`) before calling it."""
        self.docker("image", "prune", "--force", timeout=600)

    # -- the base image ------------------------------------------------------------------------------
    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False, timeout=60).returncode == 0

    def base_image(self, name: str = BASE_IMAGE) -> str:
        """Debian 12 minbase with the machine's CA certificates and apt sources, made once by
        debootstrap and `docker import`, then found by its name in the data root."""
        if self.has_image(name):
            return name
        with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=self.root) as tmp:
            rootfs = Path(tmp) / "root"
            done = subprocess.run(["debootstrap", "--variant=minbase", "--include=ca-certificates", DEBIAN_SUITE,
                                   str(rootfs), DEBIAN_MIRROR],
                                  check=False, capture_output=True, text=True, timeout=1200)
            if done.returncode != 0:
                raise RuntimeError(f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            self._localize(rootfs)
            tarball = Path(tmp) / "root.tar"
            subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True,
                           timeout=600)
            self.docker("import", "--change", 'CMD ["bash"]', str(tarball), name, timeout=600)
        return name

    @staticmethod
    def _localize(rootfs: Path) -> None:
        """The machine's CA certificates, apt sources and a pip pointed at the system bundle."""
        for cert in sorted(LOCAL_CA_FOLDER.glob("*.crt")):
            shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        sources = [f for f in [APT_FOLDER / "sources.list", *sorted(APT_FOLDER.glob("sources.list.d/*"))]
                   if f.is_file() and f.name.endswith((".list", ".sources")) and debian_only(f.read_text())]
        if sources:  # the machine's Debian archives (a mirror, the security suite) replace debootstrap's line
            (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        for source in sources:
            shutil.copy(source, rootfs / source.relative_to("/"))
        (rootfs / "etc/pip.conf").write_text(PIP_CONF)
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates", "--fresh"], check=True,
                       capture_output=True, timeout=120)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
