"""Backend rules against real servers: identities, markers, secrets, errors."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import botocore.exceptions
import pytest
import servers
from click.testing import CliRunner
from relay import Relay
from s3fs.errors import translate_boto_error
from store_helpers import Store

from journalq import ActionError, StorageQueue, compare, digest, retry
from journalq.backends import objects, open_filesystem, parse_option, s3
from journalq.backends.options import (
    SECRET_PLACEHOLDER,
    decode_options,
    public_options,
)
from journalq.cli import cli
from journalq.events import Event, EventType


def journalq_fs(store: Store):
    """Open the store as a queue does, through journalq's filesystem class."""
    return open_filesystem(store.url, store.options).fs


def open_queue(tmp_path: Path, source: Store, destination: Store, **settings):
    return StorageQueue(
        source.url,
        destination.url,
        name=tmp_path / "queue",
        source_options=source.options,
        destination_options=destination.options,
        **settings,
    )


# Identity ---------------------------------------------------------------------


def test_multipart_etag_is_no_md5(tmp_path, local_store, s3_store):
    content = os.urandom(5 * 1024 * 1024 + 1000)
    local_store.write("data/big.bin", content)
    # Uploaded by another tool, in two parts, without journalq's metadata.
    fs = s3_store.fs
    bucket, key, _ = fs.split_path(s3_store.path("out/big.bin"))
    upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    sent = [
        fs.call_s3(
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
        )
        for number, body in (
            (1, content[: 5 * 1024 * 1024]),
            (2, content[5 * 1024 * 1024 :]),
        )
    ]
    parts = [{"PartNumber": n + 1, "ETag": part["ETag"]} for n, part in enumerate(sent)]
    fs.call_s3(
        "complete_multipart_upload",
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )

    info = compare.stat(journalq_fs(s3_store), s3_store.path("out/big.bin"))
    assert info is not None
    assert info.etag is not None
    assert info.etag.strip('"').endswith("-2")
    assert info.reported("md5") is None
    assert info.reported("xxh128") is None

    # The run can only download the object to compare it, and must
    # neither crash nor copy it again.
    with open_queue(tmp_path, local_store, s3_store) as queue:
        queue.copy_tree("data", "out")
        summary = queue.run()
    assert summary.failures == []
    assert summary.copied == 0
    assert summary.skipped == 1


def test_multipart_upload_stores_digest(tmp_path, local_store, s3_store, s3_server):
    """A file above S3Sink's part size, below the part threshold, goes in parts.

    Its object gets the digest and mtime metadata of a PutObject, so the
    next checksum sync skips it without reading it: the relay to moto
    counts what the server sent back.
    """
    content = os.urandom(s3.PART_SIZE + 100 * 1024)
    local_store.write("data/mid.bin", content)
    with Relay(s3_server.port) as relay:
        endpoint = f"http://{servers.HOST}:{relay.port}"
        relayed = Store(
            "s3",
            s3_store.fs,
            s3_store.root,
            s3_store.url,
            {**s3_store.options, "endpoint_url": endpoint},
        )
        with open_queue(tmp_path, local_store, relayed) as queue:
            queue.sync("data", "out")
            assert queue.run().copied == 1
        relay.reset()
        events: list[Event] = []
        with open_queue(tmp_path, local_store, relayed) as queue:
            queue.sync("data", "out")
            second = queue.run(on_event=events.append)
        received = relay.received

    bucket, key, _ = s3_store.fs.split_path(s3_store.path("out/mid.bin"))
    head = s3_store.fs.call_s3("head_object", Bucket=bucket, Key=key)
    mtime_ns = os.stat(local_store.path("data/mid.bin")).st_mtime_ns
    assert head["Metadata"][objects.DIGEST_KEY].startswith("xxh128:")
    assert head["Metadata"][objects.MTIME_KEY] == str(mtime_ns)
    assert s3_store.read("out/mid.bin") == content
    assert second.copied == 0
    assert second.skipped == 1
    skips = [event for event in events if event.type is EventType.SKIPPED]
    assert [event.method for event in skips] == ["xxh128"]
    # Listings and HEAD responses only, no object content.
    assert received < 64 * 1024


def test_etag_md5_only_single_part():
    assert s3.etag_md5('"5d41402abc4b2a76b9719d911017c592"') == (
        "md5:5d41402abc4b2a76b9719d911017c592"
    )
    assert s3.etag_md5('"ad88494daffee5ec9b271073a058d136-3"') is None
    assert s3.etag_md5("") is None
    assert s3.etag_md5(None) is None


def test_s3_upload_stores_digest(tmp_path, local_store, s3_store):
    local_store.write("data/f.txt", b"metadata")
    with open_queue(tmp_path, local_store, s3_store) as queue:
        queue.copy_tree("data", "out")
        queue.run()

    info = compare.stat(journalq_fs(s3_store), s3_store.path("out/f.txt"))
    assert info is not None
    assert info.reported("xxh128") is not None
    assert info.reported("md5") is not None
    assert info.mtime_ns == os.stat(local_store.path("data/f.txt")).st_mtime_ns


def test_gcs_reports_md5_and_crc32c(gcs_store):
    gcs_store.write("f.txt", b"hello")
    info = compare.stat(journalq_fs(gcs_store), gcs_store.path("f.txt"))
    assert info is not None
    assert info.reported("md5") == "md5:5d41402abc4b2a76b9719d911017c592"
    assert info.reported("crc32c") == "crc32c:9a71bb4c"


def test_sftp_hashes_on_server(sftp_store):
    sftp_store.write("f.txt", b"hello")
    fs = journalq_fs(sftp_store)
    info = compare.stat(fs, sftp_store.path("f.txt"))
    assert info is not None
    assert info.computable == ("sha256", "md5")
    digest = fs.hash_remote(sftp_store.path("f.txt"), "sha256")
    assert digest == (
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )


def test_no_shared_algorithm_warns_once(caplog, monkeypatch):
    monkeypatch.setattr(compare, "_warned", False)
    remote = compare.FileInfo(size=1, mtime_ns=1, computable=())
    with caplog.at_level(logging.WARNING, logger="journalq.compare"):
        first = compare.choose_algorithm(remote, remote)
        second = compare.choose_algorithm(remote, remote)
    assert first == second == "xxh128"
    assert len(caplog.records) == 1


# Directories --------------------------------------------------------------


def test_marker_object_is_a_directory(tmp_path, s3_store, local_store):
    s3_store.write("data/empty/", b"")
    s3_store.write("data/d/", b"")
    s3_store.write("data/d/f.txt", b"f")
    with open_queue(tmp_path, s3_store, local_store) as queue:
        queue.copy_tree("data", "out")
        summary = queue.run()

    assert summary.failures == []
    out = Path(local_store.path("out"))
    assert (out / "empty").is_dir()
    assert (out / "d" / "f.txt").read_bytes() == b"f"
    assert sorted(p.name for p in out.iterdir()) == ["d", "empty"]


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_empty_directory_kept_as_marker(tmp_path, local_store, store):
    (Path(local_store.path("data")) / "empty").mkdir(parents=True)
    store.options = {**store.options, "directory_markers": True}
    with open_queue(tmp_path, local_store, store) as queue:
        queue.copy_tree("data", "out")
        assert queue.run().failures == []

    marker = store.path("out/empty/")
    assert store.fs.cat_file(marker) == b""
    store.fs.invalidate_cache()
    assert store.fs.isdir(store.path("out/empty"))


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_empty_directory_skipped_is_logged(tmp_path, local_store, store, caplog):
    (Path(local_store.path("data")) / "empty").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="journalq.backends.objects"):
        with open_queue(tmp_path, local_store, store) as queue:
            # The warning is logged once per filesystem instance, and fsspec
            # hands out the instance an earlier test with these options used.
            queue.destination.fs._skipped_directories = False
            queue.copy_tree("data", "out")
            assert queue.run().failures == []

    assert "directory_markers=true" in caplog.text
    assert store.tree("out") == {}


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_skipped_mkdir_recorded_as_skipped(tmp_path, local_store, store):
    (Path(local_store.path("data")) / "empty").mkdir(parents=True)
    local_store.write("data/f.txt", b"f")
    events: list[Event] = []
    with open_queue(tmp_path, local_store, store) as queue:
        queue.copy_tree("data", "out")
        summary = queue.run(on_event=events.append)
        actions = queue.get_actions()

    (mkdir,) = [action for action in actions if action.kind == "mkdir"]
    assert mkdir.outcome == "skipped"
    assert mkdir.method == objects.NO_DIRECTORIES
    assert summary.copied == 1
    assert summary.skipped == 1
    assert summary.done == 0
    skips = [event for event in events if event.type is EventType.SKIPPED]
    assert [(event.kind, event.method) for event in skips] == [
        ("mkdir", objects.NO_DIRECTORIES)
    ]


def test_skipped_mkdir_reported_by_cli(tmp_path, local_store, s3_store, monkeypatch):
    monkeypatch.setenv("JOURNALQ_HOME", str(tmp_path / "home"))
    (Path(local_store.path("data")) / "empty").mkdir(parents=True)
    flags = [
        item
        for name, value in s3_store.options.items()
        for item in ("--destination-option", f"{name}={value}")
    ]
    queue = str(tmp_path / "queue")
    runner = CliRunner()
    source = local_store.path("data") + "/"
    destination = s3_store.url + "/out"

    copied = runner.invoke(
        cli, ["copy", source, destination, "--queue", queue, "--json", *flags]
    )
    lines = [json.loads(line) for line in copied.stdout.splitlines()]
    verbose = runner.invoke(
        cli, ["copy", source, destination, "--queue", queue, "-v", *flags]
    )
    (skip,) = [line for line in lines if line.get("event") == "skipped"]
    shown = runner.invoke(cli, ["show", skip["id"], "--queue", queue])

    assert copied.exit_code == 0, copied.output
    assert skip["kind"] == "mkdir"
    assert skip["method"] == "no-directories"
    assert lines[-1]["skipped"] == 1
    assert "skipped mkdir" in verbose.output
    assert "skipped, decided by no-directories" in shown.output


# Secrets -----------------------------------------------------------------


def test_secrets_never_reach_queue_files(tmp_path, local_store, s3_store, caplog):
    local_store.write("data/f.txt", b"f")
    with caplog.at_level(logging.DEBUG):
        with open_queue(tmp_path, local_store, s3_store) as queue:
            queue.copy_tree("data", "out")
            queue.run()
            status = str(queue.status()) + str(queue.get_actions())
        # A resumed run gets the secret again from its caller.
        with open_queue(tmp_path, local_store, s3_store) as queue:
            queue.copy_file("data/f.txt", "again.txt")
            assert queue.run().failures == []

    secret = servers.S3_SECRET.encode()
    for path in (tmp_path / "queue").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    assert servers.S3_SECRET not in caplog.text
    assert servers.S3_SECRET not in status


def test_sftp_key_path_not_journaled(tmp_path, local_store, sftp_store):
    local_store.write("data/f.txt", b"f")
    with open_queue(tmp_path, local_store, sftp_store) as queue:
        queue.copy_tree("data", "out")
        queue.run()
    key = str(sftp_store.options["client_keys"][0]).encode()
    for path in (tmp_path / "queue").rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes(), path


def test_sftp_report_needs_no_key(tmp_path, local_store, sftp_store):
    """A read-only queue opens no filesystem, so it never connects."""
    local_store.write("data/f.txt", b"f")
    with open_queue(tmp_path, local_store, sftp_store) as queue:
        queue.copy_tree("data", "out")

    # client_keys is secret, so the journal lacks it and a connection
    # would be rejected.
    with StorageQueue(name=tmp_path / "queue", read_only=True) as report:
        assert report.status()["waiting"] > 0
        assert len(report.get_actions()) > 0
        with pytest.raises(PermissionError, match="rejected the login"):
            report.destination.fs.ls("/")


def test_options_survive_journal_types():
    journaled = public_options({"port": 2222, "known_hosts": None, "secret": "x"})
    assert journaled == {
        "port": "2222",
        "known_hosts": "null",
        "secret": SECRET_PLACEHOLDER,
    }
    assert decode_options(journaled) == {"port": 2222, "known_hosts": None}
    assert decode_options({"password": "1234"}) == {"password": "1234"}


def test_parse_option_types():
    assert parse_option("endpoint_url=http://127.0.0.1:9000") == (
        "endpoint_url",
        "http://127.0.0.1:9000",
    )
    assert parse_option("port=2222") == ("port", 2222)
    assert parse_option("anon=true") == ("anon", True)
    assert parse_option("empty=") == ("empty", "")
    with pytest.raises(ActionError, match="KEY=VALUE"):
        parse_option("no-equals-sign")


def test_fsspec_env_config_applies(tmp_path, s3_options, monkeypatch):
    """fsspec reads FSSPEC_S3_* when journalq opens the filesystem."""
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf, "s3", {"secret": s3_options["secret"]})
    filesystem = open_filesystem(
        "s3://bucket",
        {"key": s3_options["key"], "endpoint_url": s3_options["endpoint_url"]},
    )
    filesystem.fs.mkdir("jq-env-config")
    assert filesystem.fs.exists("jq-env-config")


# Remotes --------------------------------------------------------------------


def test_remote_resolves_with_env_secret(tmp_path, s3_store, monkeypatch):
    config = tmp_path / "remotes.toml"
    bucket = s3_store.root.split("/")[0]
    config.write_text(
        "[store]\n"
        'protocol = "s3"\n'
        f'root = "{bucket}"\n'
        f'endpoint_url = "{s3_store.options["endpoint_url"]}"\n'
        'key = "${JQ_TEST_KEY}"\n'
        'secret = "${JQ_TEST_SECRET}"\n'
    )
    monkeypatch.setenv("JOURNALQ_CONFIG", str(config))
    monkeypatch.setenv("JQ_TEST_KEY", s3_store.options["key"])
    monkeypatch.setenv("JQ_TEST_SECRET", s3_store.options["secret"])
    s3_store.write("r.txt", b"remote")

    filesystem = open_filesystem("store:root")
    assert filesystem.target == f"s3://{bucket}/root"
    assert filesystem.fs.cat_file(filesystem.path("r.txt")) == b"remote"


def test_remote_missing_variable_named(tmp_path, monkeypatch):
    config = tmp_path / "remotes.toml"
    config.write_text('[nas]\nprotocol = "ssh"\npassword = "${JQ_NOT_SET}"\n')
    monkeypatch.setenv("JOURNALQ_CONFIG", str(config))
    monkeypatch.delenv("JQ_NOT_SET", raising=False)
    with pytest.raises(ActionError, match="JQ_NOT_SET"):
        open_filesystem("nas:/srv")


def test_unknown_remote_lists_known(tmp_path, monkeypatch):
    config = tmp_path / "remotes.toml"
    config.write_text('[backup]\nprotocol = "memory"\n')
    monkeypatch.setenv("JOURNALQ_CONFIG", str(config))
    with pytest.raises(ActionError, match="configured: backup"):
        open_filesystem("typo:path")


def test_local_remote_keeps_absolute_root(tmp_path, monkeypatch):
    (tmp_path / "nas" / "data").mkdir(parents=True)
    (tmp_path / "nas" / "data" / "a.txt").write_bytes(b"remote root")
    config = tmp_path / "remotes.toml"
    config.write_text(f'[lr]\nprotocol = "file"\nroot = "{tmp_path / "nas"}"\n')
    monkeypatch.setenv("JOURNALQ_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)

    with StorageQueue("lr:data", tmp_path / "out", tmp_path / "q") as queue:
        queue.copy_tree("", "")
        queue.run()

    assert (tmp_path / "out" / "a.txt").read_bytes() == b"remote root"


# Bad input ------------------------------------------------------------------


def test_unknown_protocol_named():
    with pytest.raises(ActionError, match="unknown protocol 'nosuch'"):
        open_filesystem("nosuch://bucket/x")


def test_missing_package_names_extra(monkeypatch):
    """Hides journalq's S3 module, as an install without s3fs would."""
    monkeypatch.setitem(sys.modules, "journalq.backends.s3", None)
    with pytest.raises(ActionError, match=r"pip install 'journalq\[s3\]'"):
        open_filesystem("s3://bucket/x")


def test_missing_source_bucket_at_plan_time(tmp_path, local_store, s3_store):
    missing = Store("s3", s3_store.fs, "jq-missing/x", "s3://jq-missing/x")
    missing.options = s3_store.options
    with pytest.raises(ActionError, match="bucket s3://jq-missing does not exist"):
        with open_queue(tmp_path, missing, local_store) as queue:
            queue.copy_tree("data", "out")


@pytest.mark.parametrize("backend", ["gcs", "s3"])
def test_missing_destination_bucket_at_plan_time(
    tmp_path, local_store, gcs_store, s3_store, backend
):
    local_store.write("data/f.txt", b"f")
    store = gcs_store if backend == "gcs" else s3_store
    missing = Store(backend, store.fs, "jq-missing/x", f"{backend}://jq-missing/x")
    missing.options = store.options
    with open_queue(tmp_path, local_store, missing) as queue:
        with pytest.raises(ActionError, match=f"bucket {backend}://jq-missing does"):
            queue.copy_tree("data", "out")
        assert queue.status()["length"] == 0


def test_missing_destination_bucket_per_action(tmp_path, local_store, gcs_store):
    local_store.write("other.txt", b"o")
    missing = Store("gcs", gcs_store.fs, "jq-missing/x", "gcs://jq-missing/x")
    missing.options = gcs_store.options
    with open_queue(tmp_path, local_store, missing) as queue:
        queue.copy_file("other.txt", "other.txt")
        summary = queue.run()
        remaining = queue.status()

    assert len(summary.failures) == 1
    assert "bucket gcs://jq-missing does not exist" in (summary.failures[0].error or "")
    assert remaining["failed"] == 1


def test_unreachable_s3_endpoint_named(tmp_path, local_store):
    port = servers.free_port()
    options = {
        "key": "k",
        "secret": "s",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    unreachable = Store("s3", None, "b/x", "s3://jq-b/x", options)  # type: ignore[arg-type]
    with pytest.raises(ActionError, match=f"127.0.0.1:{port}"):
        with open_queue(tmp_path, unreachable, local_store) as queue:
            queue.copy_tree("data", "out")


def test_unreachable_sftp_host_named(tmp_path, local_store, sftp_store):
    port = servers.free_port()
    url = f"ssh://root@127.0.0.1:{port}/srv"
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        open_filesystem(url, sftp_store.options)


def test_wrong_s3_credentials_named(tmp_path, local_store):
    """A moto server that checks keys, as S3 does: unknown ones are refused."""
    strict = servers.moto_server(tmp_path, check_credentials=True)
    strict.start()
    try:
        options = {
            "key": "AKIAWRONGWRONGWRONG0",
            "secret": "wrong-secret",
            "endpoint_url": f"http://127.0.0.1:{strict.port}",
        }
        refused = Store("s3", None, "b/x", "s3://jq-b/x", options)  # type: ignore[arg-type]
        local_store.write("data/f.txt", b"f")
        with pytest.raises(PermissionError, match="check the credentials") as caught:
            with open_queue(tmp_path, local_store, refused) as queue:
                queue.copy_tree("data", "out")
        assert "s3://jq-b" in str(caught.value)
        assert "wrong-secret" not in str(caught.value)
    finally:
        strict.stop()


def test_wrong_sftp_key_rejected(tmp_path, sftp_store):
    other = tmp_path / "other_key"
    servers._keygen(other)
    with pytest.raises(PermissionError, match="client_keys"):
        open_filesystem(sftp_store.url, {"client_keys": [str(other)]})


# Transient errors ----------------------------------------------------------


def test_s3_throttling_is_transient():
    for code in ("SlowDown", "ServiceUnavailable", "InternalError"):
        error = botocore.exceptions.ClientError(
            {"Error": {"Code": code, "Message": code}}, "PutObject"
        )
        assert retry.classify(translate_boto_error(error)) == "transient", code
    denied = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject"
    )
    assert retry.classify(translate_boto_error(denied)) == "permanent"


def test_s3_connection_error_is_transient():
    error = botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")
    assert retry.classify(error) == "transient"
    assert retry.classify(OSError(errno.EREMOTEIO, "5xx")) == "transient"


def test_lost_ssh_connection_reconnects(tmp_path, local_store, sftp_store):
    local_store.write("data/a.txt", b"a")
    with open_queue(tmp_path, local_store, sftp_store) as queue:
        queue.copy_tree("data", "out")
        assert queue.run().failures == []

        # Drop the connection under the queue, as a network failure would.
        lost = queue.destination.fs
        lost.client.close()
        deadline = time.monotonic() + 5
        while not lost.connection_lost and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lost.connection_lost
        local_store.write("data/b.txt", b"b")
        queue.copy_tree("data", "out")
        summary = queue.run()

    assert summary.failures == []
    assert queue.destination.fs is not lost
    assert sftp_store.tree("out") == {"a.txt": b"a", "b.txt": b"b"}


# Create only ------------------------------------------------------------------

#: The three ways a file reaches S3: one PutObject, a multipart upload of
#: the streaming sink, and a copy in journaled parts. Sizes with the
#: part sizes below.
UPLOAD_SIZES = {
    "put": 1000,
    "multipart": 5 * 1024 * 1024 + 1000,
    "parts": 10 * 1024 * 1024 + 1000,
}


@pytest.mark.parametrize("upload", list(UPLOAD_SIZES))
def test_create_only_keeps_existing_object(
    tmp_path, local_store, s3_store, monkeypatch, upload
):
    """With ``create_only=true`` an existing object fails its copy alone.

    moto rejects the conditional write (``If-None-Match: *``) of an
    existing key with 412 Precondition Failed, as S3 does.
    """
    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)
    monkeypatch.setattr(digest, "PART_SIZE", 5 * 1024 * 1024)
    content = os.urandom(UPLOAD_SIZES[upload])
    local_store.write("data/taken.bin", content)
    local_store.write("data/free.txt", b"new object")
    local_store.write("data/same.txt", b"identical")
    s3_store.write("out/taken.bin", b"the object that was there")
    s3_store.write("out/same.txt", b"identical")
    s3_store.options = {**s3_store.options, "create_only": True}
    threshold = 8 * 1024 * 1024 if upload == "parts" else 64 * 1024 * 1024
    with open_queue(tmp_path, local_store, s3_store, part_threshold=threshold) as queue:
        queue.copy_tree("data", "out")
        summary = queue.run()
        failed = queue.get_actions("failed")

    assert summary.copied == 1
    assert summary.skipped == 1
    assert summary.failed == 1
    (failure,) = [action for action in failed if action.kind == "copy_file"]
    assert failure.destination == s3_store.path("out/taken.bin")
    assert "FileExistsError" in (failure.error or "")
    assert "create_only=true" in (failure.error or "")
    assert s3_store.read("out/taken.bin") == b"the object that was there"
    assert s3_store.read("out/free.txt") == b"new object"
    bucket = s3_store.root.split("/", 1)[0]
    uploads = s3_store.fs.call_s3("list_multipart_uploads", Bucket=bucket)
    assert uploads.get("Uploads", []) == []


#: The child process that copies to SFTP and kills the sshd sessions.
SSH_DROP_CHILD = Path(__file__).with_name("ssh_drop_child.py")


def test_ssh_drop_mid_copy_reconnects(tmp_path, local_store):
    """The sshd processes serving a copy are SIGKILLed between two writes.

    A queue in a child process (``ssh_drop_child.py``) does it from its
    event callback, so the copy's next write finds the connection closed.
    The server is one of its own, so that other tests keep their
    connections.
    """
    server, key = servers.sshd_server(tmp_path / "ssh")
    server.start()
    try:
        files = {f"f{index}.txt": b"small %d" % index for index in range(4)}
        files["large.bin"] = os.urandom(4 * 1024 * 1024)
        local_store.write_tree("data", files)
        root = tmp_path / "sftp"
        root.mkdir()
        url = f"ssh://root@{servers.HOST}:{server.port}{root}"
        assert server.process is not None
        arguments = [local_store.path("data"), url, tmp_path / "queue", key]
        child = subprocess.run(
            [
                sys.executable,
                str(SSH_DROP_CHILD),
                *map(str, arguments),
                str(server.process.pid),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop()

    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["killed"] != []
    assert result["errors"] == []
    assert result["failed"] == 0
    assert result["retried"] >= 1
    # A copy whose connection dropped after its file was whole finds the
    # file identical when it is tried again, so it counts as skipped.
    assert result["copied"] + result["skipped"] == len(files)
    assert result["remaining"] == 0
    copied = {path.name: path.read_bytes() for path in (root / "out").iterdir()}
    # Exactly the files: no temporary file of the cut copy is left.
    assert copied == files
