"""The soak's own throwaway servers: a redis-server with AOF and a PostgreSQL cluster.

Both run on free loopback ports in one temporary directory, so that killing and
restarting them disturbs nobody else, and both are stopped and the directory
deleted by :meth:`Servers.close`, also when the soak fails.

Redis runs with ``appendonly yes`` and ``appendfsync always``: the soak kills it
with SIGKILL and starts it again on the same AOF, and only a write that is on
disk before Redis answers it survives that crash. With a laxer fsync policy a
restart could lose jobs or finishes that a producer or worker was told were
done, and the soak would count losses that Redis caused, not bullworker.

PostgreSQL runs without fsync: its fault here is a restart (``pg_ctl restart -m
fast``, a clean shutdown that writes everything out), not a power loss, and the
recorder should not wait on this machine's disk.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bullworker.core.errors import BullworkerError


class ServerError(BullworkerError):
    """A throwaway server of the soak could not be found, started or stopped."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ServerError("redis-server not found (Debian/Ubuntu: apt-get install redis-server)")
    return found


def pg_bin() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: PATH first, then Debian's versioned dirs."""
    ctl, initdb = shutil.which("pg_ctl"), shutil.which("initdb")
    if ctl and initdb:
        where = Path(os.path.realpath(ctl)).parent
        if (where / "initdb").exists():
            return where

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.name
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.access(os.path.join(found, "initdb"), os.X_OK):
            return Path(found)
    raise ServerError("initdb/pg_ctl not found (Debian/Ubuntu: apt-get install postgresql)")


def as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (the server refuses root)."""
    if os.getuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


def _pong(port: int) -> bool:
    """Whether Redis on ``port`` answers PING with PONG (not LOADING while it reads its AOF)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server with AOF; :meth:`crash` then :meth:`start` keeps port and data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 120.0) -> None:
        argv = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"redis-server exited at start: {self.tail()}")
            if _pong(self.port):
                return
            time.sleep(0.05)
        raise ServerError(f"redis-server did not answer on port {self.port}: {self.tail()}")

    def crash(self) -> None:
        """SIGKILL, as a crash: what the AOF holds is all that survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.workdir / "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


class PgCluster:
    """A throwaway PostgreSQL cluster (``initdb``) with one database, ``soak``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.bin = pg_bin()
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/soak"

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        # cwd: the server commands fail when the postgres user cannot read the current directory.
        done = subprocess.run(
            as_postgres(list(argv)), cwd=self.workdir, capture_output=True, timeout=timeout
        )
        if done.returncode != 0:
            raise ServerError(f"{Path(argv[0]).name} failed: {done.stderr.decode()[-2000:]}")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(self.workdir, "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust",
            "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self._ctl("start")
        self.started = True
        import psycopg

        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE soak")

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.workdir / "pg.log"),
            "-w", "-t", "60", "-o", options, *extra, action,
        )  # fmt: skip

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: open connections are cut, the server comes back."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
            self.started = False


class Servers:
    """Both servers in one temporary directory; :meth:`close` stops them and deletes it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bullworker-soak-"))
        os.chmod(self.dir, 0o755)  # the postgres user must reach its data directory below
        self.redis = RedisServer(self.dir / "redis")
        self.pg = PgCluster(self.dir / "pg")
        self.runs = self.dir / "runs"
        self.runs.mkdir()

    def start(self) -> None:
        self.redis.start()
        self.pg.start()

    def close(self) -> None:
        try:
            self.redis.crash()
        finally:
            try:
                self.pg.stop()
            finally:
                shutil.rmtree(self.dir, ignore_errors=True)
