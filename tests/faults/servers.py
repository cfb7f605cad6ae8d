"""Throwaway servers for the fault scenarios: redis-server, a Sentinel set, TLS certificates.

Every server runs on a free port of its own, in a temporary directory, and is
stopped by the fixture that started it (tests/faults/conftest.py), whatever
happens in the test. Nothing here touches the shared Redis or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(
    port: int, tls_ca: Path | None = None, tls_client: tuple[Path, Path] | None = None
) -> bool:
    """Whether a Redis protocol server answers PING on 127.0.0.1:port (any reply counts)."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except OSError:
        return False
    try:
        sock: socket.socket = raw
        if tls_ca is not None:
            context = ssl.create_default_context(cafile=str(tls_ca))
            context.check_hostname = False
            if tls_client is not None:  # a server with --tls-auth-clients yes
                context.load_cert_chain(str(tls_client[0]), str(tls_client[1]))
            sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(b"PING\r\n")
        return sock.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False
    finally:
        raw.close()


class RedisServer:
    """One redis-server process; ``stop()`` then ``start()`` reuses the same port and data."""

    def __init__(
        self,
        workdir: Path,
        *,
        args: list[str] | None = None,
        port: int | None = None,
        tls_ca: Path | None = None,
        tls_client: tuple[Path, Path] | None = None,
        sentinel_conf: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.args = list(args or [])
        self.tls_ca = tls_ca
        self.tls_client = tls_client
        self.sentinel_conf = sentinel_conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"redis-{self.port}.log"
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        if self.sentinel_conf is not None:
            return [REDIS_SERVER, str(self.sentinel_conf), "--sentinel", "--logfile", str(self.log)]
        listen = ["--port", str(self.port)]
        if self.tls_ca is not None:
            listen = ["--port", "0", "--tls-port", str(self.port)]
        return [
            REDIS_SERVER, *listen, "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--logfile", str(self.log), *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.tail()}")
            if _answers(self.port, self.tls_ca, self.tls_client):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash. AOF data written so far survives for the next start()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text().splitlines()[-lines:])
        return "(no log)"


class SentinelSet:
    """A primary, one replica and one sentinel watching them as ``name``.

    ``password``: the data nodes' requirepass (and masterauth, and the sentinel's
    auth-pass). ``sentinel_password``: the sentinel's own requirepass;
    ``sentinel_users``: ACL users of the sentinel, name to password.
    """

    def __init__(
        self,
        workdir: Path,
        name: str = "mymaster",
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        sentinel_users: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.primary = RedisServer(workdir / "a", args=["--appendonly", "no", *auth])
        replica_of = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica = RedisServer(workdir / "b", args=["--appendonly", "no", *replica_of, *auth])
        self.sentinel_port = free_port()
        conf = workdir / "sentinel.conf"
        lines = [
            f"port {self.sentinel_port}", "bind 127.0.0.1", f"dir {workdir}",
            f"sentinel monitor {name} 127.0.0.1 {self.primary.port} 1",
            f"sentinel down-after-milliseconds {name} 1000",
            f"sentinel failover-timeout {name} 4000",
            f"sentinel parallel-syncs {name} 1",
        ]  # fmt: skip
        if password:
            lines.append(f"sentinel auth-pass {name} {password}")
        if sentinel_password:
            lines.append(f"requirepass {sentinel_password}")
        for user, secret in (sentinel_users or {}).items():
            lines.append(f"user {user} on >{secret} +@all")
        conf.write_text("\n".join(lines) + "\n")
        self.sentinel = RedisServer(workdir, port=self.sentinel_port, sentinel_conf=conf)

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        self.sentinel.start()

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.primary):
            server.kill()


def make_tls_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=bullworker-test-ca", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


def make_client_cert(directory: Path, name: str = "client") -> tuple[Path, Path]:
    """A client certificate signed by the CA of :func:`make_tls_certs` in ``directory``."""
    cert, key, csr = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.csr"
    for args in (
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
         "-keyout", str(key), "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.crt"),
         "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "1", "-out", str(cert)],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)
    return cert, key
