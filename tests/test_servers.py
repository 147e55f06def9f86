"""The test servers' own rules: which fake-gcs-server binary runs here."""

from __future__ import annotations

import platform

import pytest
import servers


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
