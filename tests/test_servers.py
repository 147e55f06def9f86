"""The test servers' own rules: their fixtures and the fake-gcs-server binary.

The fixture tests run pytest in a child process on test files they write,
with ``server_fixtures.py`` as its plugin, and look at what that session
started.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import servers

#: The directory of ``servers.py`` and ``server_fixtures.py``.
TESTS = Path(__file__).parent
#: A test that records the pid of the session's moto server and its bucket.
RECORDING_TEST = """
import os


def test_{name}(s3_server, bucket):
    with open(os.environ["SERVER_RECORD"], "a") as record:
        record.write(f"{{s3_server.process.pid}} {{bucket}}\\n")
"""
#: A conftest that hides s3fs, as an environment without it would.
HIDDEN_S3FS = "import sys\n\nsys.modules['s3fs'] = None\n"


def test_gcs_binary_of_this_machine():
    binary = servers.gcs_binary()

    assert binary.exists()
    system = platform.system().lower()
    architecture = servers.GO_ARCHITECTURES[platform.machine().lower()]
    assert binary.name == f"fake-gcs-server-{system}-{architecture}"


@pytest.mark.parametrize(
    ("system", "machine", "name"),
    [
        ("Linux", "riscv64", "fake-gcs-server-linux-riscv64"),
        ("Plan9", "aarch64", "fake-gcs-server-plan9-arm64"),
    ],
)
def test_gcs_binary_missing_names_path(monkeypatch, system, machine, name):
    """A machine the wrapper has no binary for, faked: the test runs on one."""
    shipped = servers.gcs_binary().name
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)

    with pytest.raises(servers.ServerError) as raised:
        servers.gcs_binary()

    message = str(raised.value)
    assert f"/{name} is missing" in message
    assert f"for {system.lower()} on {machine}" in message
    assert shipped in message


def run_session(
    root: Path, files: dict[str, str], **environment: str
) -> subprocess.CompletedProcess[str]:
    """Write ``files`` under ``root`` and run pytest there with the fixtures."""
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # An ini file of its own keeps this project's pytest settings out.
    (root / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "server_fixtures"]
    command += ["-p", "no:cacheprovider", "--basetemp", str(root / "base")]
    return subprocess.run(
        command,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(TESTS), **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def running_moto(pid: int) -> bool:
    """Return whether ``pid`` is a live moto server."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return b"moto_server" in command


def test_session_shares_one_s3_server(tmp_path):
    """Tests in two directories share one moto, which stops at the end."""
    record = tmp_path / "record.txt"
    files = {
        f"{name}/test_{name}.py": RECORDING_TEST.format(name=name)
        for name in ("one", "two")
    }

    result = run_session(tmp_path / "session", files, SERVER_RECORD=str(record))
    lines = record.read_text().splitlines() if record.exists() else []
    pids = {int(line.split()[0]) for line in lines}
    buckets = {line.split()[1] for line in lines}
    left_running = [pid for pid in pids if running_moto(pid)]
    for pid in left_running:
        os.kill(pid, signal.SIGKILL)

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines) == 2
    assert len(pids) == 1
    assert len(buckets) == 2
    assert left_running == []
    # A server creates its log when it starts, so GCS and SFTP never started.
    logs = [path.name for path in (tmp_path / "session" / "base").rglob("*.log")]
    assert logs == ["moto.log"]


def test_missing_s3fs_fails_not_skips(tmp_path):
    """s3fs is a test dependency, so a bucket without it is an error."""
    files = {
        "conftest.py": HIDDEN_S3FS,
        "test_bucket.py": "def test_bucket(bucket):\n    pass\n",
    }

    result = run_session(tmp_path / "session", files)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "s3fs" in result.stdout
