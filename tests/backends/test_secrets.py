"""Secrets in URLs, nested in storage options, and in fsspec's environment.

Each test reaches a real server (sshd, moto) and then reads every file
under the queue directory, the lock's holder record included, for the
secret. The command-line tests run ``python -m journalq`` in child
processes, and some of those SIGKILL themselves at a crash point
(``JOURNALQ_CRASH_AT``), so that the lock keeps the dead holder's argv.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import S3_KEY
from store_helpers import Store

from journalq import ActionError, StorageOptionError, StorageQueue
from journalq.backends.options import (
    SECRET_PLACEHOLDER,
    decode_options,
    public_options,
    secret_names,
)
from journalq.cli.queues import default_queue_name, parse_location
from journalq.lock import read_holder
from journalq.store import read_state

#: The password given in the SFTP URLs; sshd takes the client key, so the
#: password only has to reach sshfs, never to be checked.
URL_PASSWORD = "url-pass-HUNTER2"
#: A secret that reaches moto only inside ``client_kwargs``.
NESTED_SECRET = "nested-secret-S3CR3T"


def with_password(url: str, password: str = URL_PASSWORD) -> str:
    """Put ``password`` into the userinfo of an ``ssh://root@...`` URL."""
    return url.replace("root@", f"root:{password}@", 1)


def assert_nowhere(secret: str, *directories: Path) -> None:
    """Check that no file under ``directories`` contains ``secret``."""
    for directory in directories:
        for path in directory.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def journalq(
    *arguments: str, home: Path, crash_at: str | None = None, **env: str
) -> subprocess.CompletedProcess:
    """Run ``python -m journalq ARGUMENTS`` with its own queue home."""
    environment = {**os.environ, "JOURNALQ_HOME": str(home), **env}
    environment.pop("JOURNALQ_CRASH_AT", None)
    if crash_at is not None:
        environment["JOURNALQ_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def only_queue(home: Path) -> Path:
    """Return the one queue directory under ``home``."""
    (queue,) = (home / "queues").iterdir()
    return queue


def sftp_queue(name: Path, source: Store, sftp: Store, url: str = "") -> StorageQueue:
    """Open queue ``name`` to ``sftp`` through ``url``, by default with a password."""
    return StorageQueue(
        source.url,
        url or with_password(sftp.url),
        name,
        destination_options=sftp.options,
    )


def added_queue(tmp_path: Path, source: Store, sftp: Store) -> Path:
    """Create a queue with a URL password and add ``data/f.txt`` to it."""
    source.write("data/f.txt", b"f")
    name = tmp_path / "queue"
    with sftp_queue(name, source, sftp) as queue:
        queue.copy_tree("data", "out")
    return name


def sftp_flags(store: Store) -> list[str]:
    """The ``--destination-option`` flags of the store's client key."""
    keys = json.dumps(store.options["client_keys"])
    return [
        "--destination-option",
        f"client_keys={keys}",
        "--destination-option",
        "known_hosts=null",
    ]


# Passwords in URLs ---------------------------------------------------------------


def test_url_password_not_journaled(tmp_path, local_store, sftp_store, caplog):
    local_store.write("data/f.txt", b"f")
    name = tmp_path / "queue"
    with caplog.at_level(logging.DEBUG):
        with sftp_queue(name, local_store, sftp_store) as queue:
            # sshfs gets the password as its option, as from the URL.
            assert queue.destination.fs.storage_options["password"] == URL_PASSWORD
            assert queue.destination.url == sftp_store.url
            queue.copy_tree("data", "out")
            assert queue.run().copied == 1
            reports = f"{queue.status()} {queue.get_actions()} {queue.source}"

    created = read_state(name).created
    assert created is not None
    assert created.destination.url == sftp_store.url
    assert created.destination.options["password"] == SECRET_PLACEHOLDER
    assert sftp_store.read("out/f.txt") == b"f"
    assert URL_PASSWORD not in reports
    assert URL_PASSWORD not in caplog.text
    assert_nowhere(URL_PASSWORD, name)


def test_url_password_needed_to_resume(tmp_path, local_store, sftp_store):
    name = added_queue(tmp_path, local_store, sftp_store)

    with pytest.raises(ActionError) as caught:
        StorageQueue(name=name, destination_options=sftp_store.options)
    message = str(caught.value)
    assert "--destination-option password=..." in message
    assert "the destination URL again with user:PASSWORD@" in message
    assert URL_PASSWORD not in message
    with StorageQueue(
        name=name, read_only=True, destination_options=sftp_store.options
    ) as report:
        assert report.status()["waiting"] > 0
    with sftp_queue(name, local_store, sftp_store) as queue:
        summary = queue.run()

    assert summary.failures == []
    assert summary.copied == 1
    assert sftp_store.read("out/f.txt") == b"f"
    assert_nowhere(URL_PASSWORD, name)


def test_url_password_as_option_resumes(tmp_path, local_store, sftp_store):
    name = added_queue(tmp_path, local_store, sftp_store)
    options = {**sftp_store.options, "password": URL_PASSWORD}

    with StorageQueue(name=name, destination_options=options) as queue:
        assert queue.destination.fs.storage_options["password"] == URL_PASSWORD
        assert queue.run().copied == 1


def test_other_url_named_without_password(tmp_path, local_store, sftp_store):
    name = tmp_path / "queue"
    with sftp_queue(name, local_store, sftp_store):
        pass
    other = with_password(sftp_store.url + "/elsewhere", "other-pass-XYZZY")

    with pytest.raises(ActionError, match="was created with the destination") as caught:
        sftp_queue(name, local_store, sftp_store, other)
    assert "other-pass-XYZZY" not in str(caught.value)
    assert URL_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "memory://user:HUNTER2@/src",
        "file://user:HUNTER2@/src",
        "s3://user:HUNTER2@bucket/src",
        "simplecache::ssh://user:HUNTER2@127.0.0.1/src",
    ],
)
def test_password_kept_in_paths_rejected(tmp_path, local_store, url):
    """A filesystem that takes no password would keep it in every path."""
    name = tmp_path / "queue"
    with pytest.raises(ActionError) as caught:
        StorageQueue(url, local_store.url, name)

    message = str(caught.value)
    assert "HUNTER2" not in message
    assert "user@" in message
    assert "storage option" in message
    assert not name.exists()
    with pytest.raises(ActionError) as caught:
        parse_location(url)
    assert "HUNTER2" not in str(caught.value)


def test_queue_name_ignores_url_password(sftp_store):
    url = sftp_store.url + "/out"
    plain = parse_location(url)
    secret = parse_location(with_password(url))
    source = parse_location("/srv/data")

    assert secret.url == plain.url
    assert default_queue_name("copy", source, secret) == default_queue_name(
        "copy", source, plain
    )


def test_cli_url_password_killed_resumed(tmp_path, local_store, sftp_store):
    for name in ("a.txt", "b.txt"):
        local_store.write(f"data/{name}", name.encode())
    home = tmp_path / "home"
    destination = with_password(sftp_store.url) + "/out"
    copy = [
        "copy",
        local_store.path("data") + "/",
        destination,
        *sftp_flags(sftp_store),
    ]

    killed = journalq(*copy, home=home, crash_at="transfer.before_rename")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    queue = only_queue(home)
    holder = read_holder(queue)
    assert holder is not None
    assert with_password(sftp_store.url, "***") + "/out" in holder["argv"]
    assert_nowhere(URL_PASSWORD, home)

    bare = journalq("run", "--queue", str(queue), *sftp_flags(sftp_store), home=home)
    assert bare.returncode == 2
    assert "--destination-option password=..." in bare.stderr
    assert URL_PASSWORD not in bare.stderr + bare.stdout

    again = journalq(*copy, "--json", home=home)
    assert again.returncode == 0, again.stderr
    assert sftp_store.tree("out") == {"a.txt": b"a.txt", "b.txt": b"b.txt"}
    assert URL_PASSWORD not in again.stdout + again.stderr
    # Reports open no filesystem, so they need neither key nor password.
    status = journalq("status", "--queue", str(queue), home=home)
    assert status.returncode == 0, status.stderr
    host = sftp_store.url.removesuffix(sftp_store.root)
    assert host in status.stdout
    assert URL_PASSWORD not in status.stdout + status.stderr
    listed = journalq("actions", "--json", "--queue", str(queue), home=home)
    first = json.loads(listed.stdout.splitlines()[0])["id"]
    for command in (["actions"], ["status", "--json"], ["show", first]):
        report = journalq(*command, "--queue", str(queue), home=home)
        assert report.returncode == 0, report.stderr
        assert URL_PASSWORD not in report.stdout + report.stderr
    assert URL_PASSWORD not in listed.stdout + listed.stderr
    assert_nowhere(URL_PASSWORD, home)


def test_cli_memory_url_password_rejected(tmp_path, local_store):
    home = tmp_path / "home"
    result = journalq(
        "copy", "memory://user:HUNTER2@/src", local_store.path("out"), home=home
    )

    assert result.returncode == 2
    assert "memory://user@/src" in result.stderr
    assert "HUNTER2" not in result.stdout + result.stderr
    assert not (home / "queues").exists() or not any((home / "queues").iterdir())


# Secrets nested in storage options -------------------------------------------


def test_nested_secrets_journaled_as_placeholders():
    options = {
        "client_kwargs": {"aws_secret_access_key": "S", "region_name": "r"},
        "config_kwargs": {"proxies": {"https": "http://user:S@proxy:3128"}},
        "ssh": [{"host": "h", "password": "S"}, {"client_keys": ["S"]}],
        "headers": {"X-Amz-Security-Token": "S", "Accept": "*/*"},
        "port": 2222,
    }

    journaled = public_options(options)

    assert json.loads(journaled["client_kwargs"]) == {
        "aws_secret_access_key": SECRET_PLACEHOLDER,
        "region_name": "r",
    }
    assert json.loads(journaled["config_kwargs"]) == {
        "proxies": {"https": SECRET_PLACEHOLDER}
    }
    assert json.loads(journaled["ssh"]) == [
        {"host": "h", "password": SECRET_PLACEHOLDER},
        {"client_keys": SECRET_PLACEHOLDER},
    ]
    assert json.loads(journaled["headers"]) == {
        "X-Amz-Security-Token": SECRET_PLACEHOLDER,
        "Accept": "*/*",
    }
    assert secret_names(journaled) == [
        "client_kwargs",
        "config_kwargs",
        "ssh",
        "headers",
    ]
    assert decode_options(journaled) == {
        "client_kwargs": {"region_name": "r"},
        "config_kwargs": {"proxies": {}},
        "ssh": [{"host": "h"}, {}],
        "headers": {"Accept": "*/*"},
        "port": 2222,
    }


def nested_options(s3_store: Store) -> dict[str, Any]:
    """moto's endpoint, with the key and secret only inside client_kwargs."""
    return {
        "endpoint_url": s3_store.options["endpoint_url"],
        "client_kwargs": {
            "aws_access_key_id": S3_KEY,
            "aws_secret_access_key": NESTED_SECRET,
        },
    }


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide credentials of the environment, so only the options give them.

    The instance metadata service is off too: botocore would otherwise ask
    169.254.169.254 for credentials.
    """
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_nested_s3_secret_copies(
    tmp_path, local_store, s3_store, no_aws_credentials, caplog
):
    local_store.write("data/f.txt", b"f")
    name = tmp_path / "queue"
    options = nested_options(s3_store)
    with caplog.at_level(logging.DEBUG):
        with StorageQueue(
            local_store.url, s3_store.url, name, destination_options=options
        ) as queue:
            queue.copy_tree("data", "out")
            reports = f"{queue.status()} {queue.get_actions()}"

        with pytest.raises(ActionError, match="--destination-option client_kwargs="):
            StorageQueue(name=name, destination_options={"endpoint_url": "x"})
        with StorageQueue(name=name, destination_options=options) as queue:
            summary = queue.run()

    assert summary.failures == []
    assert summary.copied == 1
    assert s3_store.read("out/f.txt") == b"f"
    created = read_state(name).created
    assert created is not None
    journaled = json.loads(created.destination.options["client_kwargs"])
    assert journaled["aws_secret_access_key"] == SECRET_PLACEHOLDER
    assert NESTED_SECRET not in reports
    assert NESTED_SECRET not in caplog.text
    assert_nowhere(NESTED_SECRET, name)


def test_cli_nested_secret_killed_resumed(
    tmp_path, local_store, s3_store, no_aws_credentials
):
    for name in ("a.txt", "b.txt"):
        local_store.write(f"data/{name}", name.encode())
    home = tmp_path / "home"
    options = nested_options(s3_store)
    flags = [
        "--destination-option",
        f"endpoint_url={options['endpoint_url']}",
        "--destination-option",
        f"client_kwargs={json.dumps(options['client_kwargs'])}",
    ]
    copy = ["copy", local_store.path("data") + "/", s3_store.url + "/out", *flags]

    killed = journalq(*copy, home=home, crash_at="transfer.before_rename")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    queue = only_queue(home)
    holder = read_holder(queue)
    assert holder is not None
    assert '"aws_secret_access_key": "***"' in " ".join(holder["argv"])
    assert_nowhere(NESTED_SECRET, home)

    bare = journalq("run", "--queue", str(queue), *flags[:2], home=home)
    assert bare.returncode == 2
    assert "--destination-option client_kwargs=..." in bare.stderr
    again = journalq(*copy, home=home)
    assert again.returncode == 0, again.stderr
    assert s3_store.tree("out") == {"a.txt": b"a.txt", "b.txt": b"b.txt"}
    assert NESTED_SECRET not in again.stdout + again.stderr
    assert_nowhere(NESTED_SECRET, home)


# fsspec's configuration from the environment ----------------------------------


def test_cli_fsspec_environment_credentials(
    tmp_path, local_store, s3_store, no_aws_credentials
):
    """fsspec applies FSSPEC_S3_<OPTION> to every s3 filesystem it makes."""
    secret = "env-secret-FSSPEC"
    for name in ("a.txt", "b.txt"):
        local_store.write(f"data/{name}", name.encode())
    home = tmp_path / "home"
    environment = {
        "FSSPEC_S3_KEY": S3_KEY,
        "FSSPEC_S3_SECRET": secret,
        "FSSPEC_S3_ENDPOINT_URL": s3_store.options["endpoint_url"],
    }
    copy = ["copy", local_store.path("data") + "/", s3_store.url + "/out"]

    killed = journalq(
        *copy, home=home, crash_at="transfer.before_rename", **environment
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    queue = str(only_queue(home))
    # No option was given, so the queue needs none again: the resumed run
    # gets the credentials from the environment once more.
    resumed = journalq("run", "--queue", queue, "--json", home=home, **environment)
    assert resumed.returncode == 0, resumed.stderr
    status = journalq("status", "--queue", queue, home=home)

    assert s3_store.tree("out") == {"a.txt": b"a.txt", "b.txt": b"b.txt"}
    assert status.returncode == 0, status.stderr
    assert secret not in resumed.stdout + resumed.stderr + status.stdout
    assert_nowhere(secret, home)


def test_misspelled_secret_names_both(tmp_path, local_store, s3_store):
    """A queue missing its ``secret`` and given ``secert`` names both."""
    local_store.write("data/f.txt", b"f")
    name = tmp_path / "queue"
    with StorageQueue(
        local_store.url, s3_store.url, name, destination_options=s3_store.options
    ) as queue:
        queue.copy_tree("data", "out")
    options = dict(s3_store.options)
    options["secert"] = options.pop("secret")

    with pytest.raises(StorageOptionError) as raised:
        StorageQueue(name=name, destination_options=options)

    error = raised.value
    assert error.names == ["secert"]
    assert error.suggestions == {"secert": "secret"}
    assert error.missing_secrets == ["secret"]
    assert error.role == "destination"
    assert "needs the secret destination option 'secret' again" in str(error)
    assert "Give them in destination_options under their right names" in str(error)
    assert options["secert"] not in str(error)
