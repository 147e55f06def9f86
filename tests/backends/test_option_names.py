"""Storage option names checked before a queue is created or opened.

A misspelled option must fail before anything is created or journaled,
because the queue keeps the options it was created with. The tests run
``python -m journalq`` against moto, sshd and the local disk, and one
builds a queue whose creation record keeps a misspelled option, as an
older journalq that did not check names left it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import servers
from store_helpers import Store

from journalq import StorageOptionError, StorageOptionValueError, StorageQueue
from journalq.backends.option_names import accepted_options, check_options
from journalq.records import Endpoint, QueueCreated
from journalq.store import QueueStore


def journalq(*arguments: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m journalq ARGUMENTS`` with its own queue home."""
    return subprocess.run(
        [sys.executable, "-m", "journalq", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "JOURNALQ_HOME": str(home)},
        timeout=120,
        check=False,
    )


def destination_flags(store: Store, **replace: object) -> list[str]:
    """Return ``--destination-option`` flags of ``store``'s options, changed."""
    options = {**store.options, **replace}
    return [
        flag
        for name, value in options.items()
        for flag in ("--destination-option", f"{name}={json.dumps(value)}")
    ]


def queues_in(home: Path) -> list[str]:
    queues = home / "queues"
    return sorted(os.listdir(queues)) if queues.exists() else []


def test_cli_misspelled_option_creates_nothing(tmp_path, local_store, s3_store):
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"
    endpoint = s3_store.options["endpoint_url"]
    misspelled = {
        name: value
        for name, value in s3_store.options.items()
        if name != "endpoint_url"
    }
    flags = destination_flags(Store("s3", s3_store.fs, "", "", misspelled))
    source = local_store.path("d0") + "/"
    target = s3_store.url + "/d0"

    first = journalq(
        "copy",
        source,
        target,
        *flags,
        "--destination-option",
        f"endpoint={endpoint}",
        home=home,
    )

    assert first.returncode == 2, first.stderr
    assert "'endpoint' (did you mean 'endpoint_url'?)" in first.stderr
    assert "--destination-option" in first.stderr
    assert "nothing was created" in first.stderr
    assert queues_in(home) == []

    second = journalq(
        "copy",
        source,
        target,
        *flags,
        "--destination-option",
        f"endpoint_url={endpoint}",
        home=home,
    )

    assert second.returncode == 0, second.stderr
    assert s3_store.read("d0/a.txt") == b"alpha"


def test_cli_kept_misspelled_option_explained(tmp_path, local_store, s3_store):
    """A queue that keeps a misspelled option names it and the way out."""
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"
    directory = tmp_path / "queue"
    endpoint = s3_store.options["endpoint_url"]

    def create(queue_id: str) -> QueueCreated:
        return QueueCreated(
            queue_id,
            "queue",
            Endpoint("file://", {}),
            Endpoint("s3://", {"endpoint": endpoint}),
            4,
            time.time_ns(),
        )

    QueueStore.open(directory, create=create).close()
    source = local_store.path("d0") + "/"
    target = s3_store.url + "/d0"
    arguments = ("copy", source, target, "--queue", str(directory))

    rejected = journalq(*arguments, *destination_flags(s3_store), home=home)

    assert rejected.returncode == 2, rejected.stderr
    assert "keeps the destination options it was created with" in rejected.stderr
    assert "'endpoint' (did you mean 'endpoint_url'?)" in rejected.stderr
    assert f"journalq drop {directory}" in rejected.stderr
    assert "--queue" in rejected.stderr

    dropped = journalq("drop", str(directory), home=home)
    again = journalq(*arguments, *destination_flags(s3_store), home=home)

    assert dropped.returncode == 0, dropped.stderr
    assert again.returncode == 0, again.stderr
    assert s3_store.read("d0/a.txt") == b"alpha"


def test_cli_given_option_wins(tmp_path, local_store, s3_store):
    """An option given again replaces the one the queue was created with."""
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"
    directory = tmp_path / "queue"
    nowhere = f"http://{servers.HOST}:{servers.free_port()}"
    options = {**s3_store.options, "endpoint_url": nowhere}
    StorageQueue("file://", "s3://", directory, destination_options=options).close()

    fixed = journalq(
        "copy",
        local_store.path("d0") + "/",
        s3_store.url + "/d0",
        *("--queue", str(directory), "-v"),
        *destination_flags(s3_store),
        home=home,
    )

    assert fixed.returncode == 0, fixed.stderr
    assert "using the destination option endpoint_url given now" in fixed.stderr
    assert s3_store.read("d0/a.txt") == b"alpha"


def test_library_misspelled_option_rejected(tmp_path, local_store, s3_store):
    options = {**s3_store.options, "endpont_url": "x"}
    directory = tmp_path / "queue"

    with pytest.raises(StorageOptionError) as raised:
        StorageQueue(
            local_store.url, s3_store.url, directory, destination_options=options
        )

    error = raised.value
    assert error.names == ["endpont_url"]
    assert error.suggestions == {"endpont_url": "endpoint_url"}
    assert error.role == "destination"
    assert error.journaled == []
    assert "correct destination_options" in str(error)
    assert not directory.exists()


def test_cli_sftp_unknown_option_rejected(tmp_path, local_store, sftp_store):
    """sshfs passes options to asyncssh, whose TypeError names the option."""
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"

    result = journalq(
        "copy",
        local_store.path("d0") + "/",
        sftp_store.url + "/d0",
        *destination_flags(sftp_store, client_keyz=["x"]),
        home=home,
    )

    assert result.returncode == 2, result.stderr
    assert "client_keyz" in result.stderr
    assert queues_in(home) == []


@pytest.mark.parametrize(
    ("option", "value", "rejected"),
    [
        (
            "client_kwargs",
            {"endpoint_ur": "http://127.0.0.1:9"},
            "'endpoint_ur' (did you mean 'endpoint_url'?)",
        ),
        (
            "config_kwargs",
            {"retrys": {"max_attempts": 1}},
            "'retrys' (did you mean 'retries'?)",
        ),
    ],
)
def test_cli_misspelled_nested_key_rejected(
    tmp_path, local_store, s3_store, option, value, rejected
):
    """A wrong key inside a JSON option fails before anything connects."""
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"

    result = journalq(
        "copy",
        local_store.path("d0") + "/",
        s3_store.url + "/d0",
        *destination_flags(s3_store, **{option: value}),
        home=home,
    )

    assert result.returncode == 2, result.stderr
    assert f"takes no key {rejected} in the storage option {option!r}" in (
        result.stderr
    )
    assert f"correct the --destination-option {option}=... value" in result.stderr
    assert "nothing was created" in result.stderr
    assert "botocore" in result.stderr
    assert "Traceback" not in result.stderr
    assert queues_in(home) == []
    assert not s3_store.fs.exists(s3_store.root + "/d0")


@pytest.mark.parametrize(
    ("value", "given"),
    [
        ("{region_name: us-east-1}", "the string '{region_name: us-east-1}'"),
        ("[1, 2]", "a JSON array"),
    ],
)
def test_cli_nested_option_not_object(tmp_path, local_store, s3_store, value, given):
    """A JSON option given something other than an object fails before any add."""
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"

    result = journalq(
        "copy",
        local_store.path("d0") + "/",
        s3_store.url + "/d0",
        *destination_flags(s3_store),
        *("--destination-option", f"client_kwargs={value}"),
        home=home,
    )

    assert result.returncode == 2, result.stderr
    assert "takes a JSON object in the storage option 'client_kwargs'" in (
        result.stderr
    )
    assert given in result.stderr
    assert "--destination-option 'client_kwargs={" in result.stderr
    assert "Traceback" not in result.stderr
    assert queues_in(home) == []


def test_library_nested_option_not_object(tmp_path, local_store):
    directory = tmp_path / "queue"

    with pytest.raises(StorageOptionValueError) as raised:
        StorageQueue(
            local_store.url,
            "s3://bucket",
            directory,
            destination_options={"client_kwargs": "region_name=us-east-1"},
        )

    error = raised.value
    assert error.option == "client_kwargs"
    assert error.role == "destination"
    assert "correct destination_options['client_kwargs']" in str(error)
    assert not directory.exists()


def test_cli_nested_keys_accepted(tmp_path, local_store, s3_store):
    """Keys botocore takes pass the check and reach the client."""
    local_store.write("d0/a.txt", b"alpha")
    flags = destination_flags(
        s3_store,
        client_kwargs={"region_name": "us-east-1", "use_ssl": False},
        config_kwargs={"max_pool_connections": 4, "retries": {"max_attempts": 2}},
    )

    result = journalq(
        "copy",
        local_store.path("d0") + "/",
        s3_store.url + "/d0",
        *flags,
        home=tmp_path / "home",
    )

    assert result.returncode == 0, result.stderr
    assert s3_store.read("d0/a.txt") == b"alpha"


def test_cli_kept_nested_key_replaced(tmp_path, local_store, s3_store):
    """A queue that keeps a wrong key in a JSON option takes a corrected one."""
    local_store.write("d0/a.txt", b"alpha")
    home = tmp_path / "home"
    directory = tmp_path / "queue"
    kept_value = json.dumps({"endpoint_ur": s3_store.options["endpoint_url"]})

    def create(queue_id: str) -> QueueCreated:
        return QueueCreated(
            queue_id,
            "queue",
            Endpoint("file://", {}),
            Endpoint("s3://", {"client_kwargs": kept_value}),
            4,
            time.time_ns(),
        )

    QueueStore.open(directory, create=create).close()
    arguments = (
        "copy",
        local_store.path("d0") + "/",
        s3_store.url + "/d0",
        *("--queue", str(directory)),
    )

    rejected = journalq(*arguments, *destination_flags(s3_store), home=home)
    corrected = journalq(
        *arguments,
        *destination_flags(s3_store, client_kwargs={"region_name": "us-east-1"}),
        home=home,
    )

    assert rejected.returncode == 2, rejected.stderr
    assert "keeps the destination options it was created with" in rejected.stderr
    assert "'endpoint_ur' (did you mean 'endpoint_url'?)" in rejected.stderr
    assert "Give --destination-option client_kwargs=... again" in rejected.stderr
    assert corrected.returncode == 0, corrected.stderr
    assert s3_store.read("d0/a.txt") == b"alpha"


def test_library_nested_key_rejected(tmp_path, local_store):
    """gcsfs's session_kwargs are checked against aiohttp.ClientSession."""
    directory = tmp_path / "queue"
    options = {"session_kwargs": {"timout": 5}}

    with pytest.raises(StorageOptionError) as raised:
        StorageQueue(
            local_store.url, "gcs://bucket", directory, destination_options=options
        )

    error = raised.value
    assert error.option == "session_kwargs"
    assert error.names == ["timout"]
    assert error.suggestions == {"timout": "timeout"}
    assert "aiohttp.ClientSession" in str(error)
    assert "correct destination_options['session_kwargs']" in str(error)
    assert not directory.exists()


@pytest.mark.parametrize(
    ("protocol", "names"),
    [
        ("s3", {"endpoint_url", "profile", "directory_markers", "max_paths"}),
        ("gcs", {"project", "endpoint_url", "directory_markers", "token"}),
        ("file", {"auto_mkdir", "use_listings_cache"}),
        ("memory", {"global_store", "skip_instance_cache"}),
    ],
)
def test_accepted_options_complete(protocol, names):
    import fsspec

    from journalq.backends import _BACKENDS

    if protocol in _BACKENDS:
        module = __import__(
            f"journalq.backends.{_BACKENDS[protocol]}", fromlist=["FILESYSTEM"]
        )
        cls = module.FILESYSTEM
    else:
        cls = fsspec.get_filesystem_class(protocol)

    accepted, complete = accepted_options(cls)

    assert complete
    assert names <= accepted
    assert "endpoint" not in accepted


def test_undecidable_options_warned(caplog):
    """HTTP passes unknown options to each request: they are warned about."""
    import fsspec

    cls = fsspec.get_filesystem_class("http")
    caplog.set_level(logging.WARNING, "journalq")

    check_options(cls, "http://127.0.0.1/", {"headerz": {}, "client_kwargs": {}})

    _, complete = accepted_options(cls)
    assert not complete
    assert "cannot check the storage option 'headerz'" in caplog.text
    assert "client_kwargs" not in caplog.text
