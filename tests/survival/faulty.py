"""Filesystems that fail a seeded share of their calls, for the fault tests.

No real server fails a chosen request on demand, and a dropped connection
cannot be aimed at one call, so these two subclasses are the mocks of the
survival tests. Each call draws from a :class:`FaultPlan`: most calls go
through to the real component underneath, and the rest raise the error
that component raises for that fault.

* :class:`FaultyS3Filesystem` is journalq's own S3 filesystem with a
  wrapped botocore client. The fault is raised where botocore raises it,
  inside the client call, so it passes through s3fs's error translation
  and journalq's S3 error rules exactly as a response of the server
  (moto on 127.0.0.1) would.
* :class:`FaultyGCSFilesystem` is journalq's GCS filesystem whose HTTP
  requests fail before they leave gcsfs, with the error gcsfs raises once
  its own retries are used up: ``HttpError`` 503, or aiohttp's error for a
  dropped connection or a read timeout. The requests that go through reach
  fake-gcs-server on 127.0.0.1.
* :class:`FaultyMemoryFileSystem` is fsspec's memory filesystem with
  faulty methods. It is the base for plain errors (``ConnectionResetError``,
  ``TimeoutError``, ENOSPC) because every call journalq makes to it is an
  fsspec method. The local filesystem cannot take that role: journalq
  detects a local disk and copies with ``os`` calls that bypass every fsspec
  method.

They are registered with fsspec under their own protocols
(``faults3://``, ``faultgcs://``, ``faultymemory://``), so queues and the ``journalq``
command open them from a URL. The plan comes from storage options:
``fault_rate`` (share of calls that fail), ``faults`` (comma-separated
names of :data:`TRANSIENT` and :data:`PERMANENT`), ``fault_seed``,
``fault_operations`` (comma-separated call names; empty: every call) and
``fault_first`` (the first N calls of each operation on each path fail,
whatever the rate).
"""

from __future__ import annotations

import errno
import functools
import json
import random
import re
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import botocore.exceptions
import fsspec
from fsspec.implementations.memory import MemoryFileSystem
from gcsfs import GCSFileSystem
from gcsfs.retry import HttpError

from journalq import transfer
from journalq.backends.gcs import GCSFilesystem
from journalq.backends.s3 import S3Filesystem

#: Faults that a later attempt can outlive.
TRANSIENT: Final = ("slowdown", "reset", "timeout")
#: Faults that repeat until someone changes something.
PERMANENT: Final = ("denied", "missing", "full")

MEMORY_PROTOCOL: Final = "faultymemory"
S3_PROTOCOL: Final = "faults3"
GCS_PROTOCOL: Final = "faultgcs"


@dataclass(frozen=True, slots=True)
class Injected:
    """One call that a plan failed."""

    operation: str
    path: str
    fault: str


@dataclass
class FaultPlan:
    """Which calls fail: a seeded draw per call.

    The draw of a call depends only on the seed, the operation, the path and
    how many calls of that operation on that path came before. Threads that
    interleave differently therefore see the same faults, as long as each
    path is used by one action at a time.
    """

    rate: float = 0.0
    faults: tuple[str, ...] = TRANSIENT
    seed: int = 0
    #: Names of the calls that may fail; empty: every call.
    operations: frozenset[str] = frozenset()
    #: The first calls of each operation on each path that fail for sure.
    first: int = 0
    injected: list[Injected] = field(default_factory=list)
    _calls: Counter[tuple[str, str]] = field(
        default_factory=Counter, init=False, repr=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False
    )

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> FaultPlan:
        """Take the plan's storage options out of ``options``."""
        names = str(options.pop("faults", ",".join(TRANSIENT)))
        operations = str(options.pop("fault_operations", ""))
        return cls(
            rate=float(options.pop("fault_rate", 0.0)),
            faults=tuple(name for name in names.split(",") if name),
            seed=int(options.pop("fault_seed", 0)),
            operations=frozenset(name for name in operations.split(",") if name),
            first=int(options.pop("fault_first", 0)),
        )

    def draw(self, operation: str, path: str) -> str | None:
        """Return the fault this call gets, or None to let it through."""
        key = (operation, path)
        with self._lock:
            number = self._calls[key]
            self._calls[key] += 1
        if self.operations and operation not in self.operations:
            return None
        # A string seed is hashed with SHA-512, so the draw is the same in
        # every process, whatever PYTHONHASHSEED is.
        rng = random.Random(f"{self.seed}/{operation}/{path}/{number}")
        if number >= self.first and rng.random() >= self.rate:
            return None
        fault = rng.choice(self.faults)
        with self._lock:
            self.injected.append(Injected(operation, path, fault))
        return fault

    def failed_paths(self, faults: tuple[str, ...] = PERMANENT) -> set[str]:
        """Return the paths of the calls that got one of ``faults``."""
        return {item.path for item in self.injected if item.fault in faults}


def describe(fault: str, operation: str, path: str) -> str:
    """Return the message of an injected fault, which names it as injected."""
    return f"injected {fault} fault in {operation} of {path}"


# Memory ----------------------------------------------------------------------


def memory_error(fault: str, operation: str, path: str) -> OSError:
    """Return the built-in error a filesystem raises for ``fault``."""
    message = describe(fault, operation, path)
    if fault == "reset":
        return ConnectionResetError(errno.ECONNRESET, message)
    if fault == "timeout":
        return TimeoutError(errno.ETIMEDOUT, message)
    if fault == "denied":
        return PermissionError(errno.EACCES, message)
    if fault == "missing":
        return FileNotFoundError(errno.ENOENT, message)
    if fault == "full":
        return OSError(errno.ENOSPC, message)
    raise ValueError(f"the memory filesystem has no fault {fault!r}")


class FaultyMemoryFileSystem(MemoryFileSystem):
    """fsspec's memory filesystem whose calls fail as :attr:`plan` decides.

    The faulty calls are ``info``, ``ls``, ``find``, ``cat_file``
    (journalq reads memory files with it), ``pipe_file``, ``makedirs``,
    ``rm_file``, ``rmdir`` and ``write``, the commit of a copy. The store
    is the memory filesystem's, shared with ``memory://``.
    """

    protocol = (MEMORY_PROTOCOL,)
    # A fresh plan per queue: fsspec would otherwise hand every queue
    # with the same options the instance, and the call counts, of the first.
    cachable = False

    def __init__(self, *args: Any, **options: Any) -> None:
        self.plan = FaultPlan.from_options(options)
        super().__init__(*args, **options)
        unknown = set(self.plan.faults) - {"reset", "timeout", *PERMANENT}
        if unknown:
            raise ValueError(f"the memory filesystem has no faults {unknown}")

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.removeprefix(f"{MEMORY_PROTOCOL}://"))

    def check(self, operation: str, path: str) -> None:
        """Raise the fault the plan draws for this call, if any."""
        fault = self.plan.draw(operation, self._strip_protocol(path))
        if fault is not None:
            raise memory_error(fault, operation, path)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        self.check("info", path)
        return super().info(path, **kwargs)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        self.check("ls", path)
        return super().ls(path, detail=detail, **kwargs)

    def find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        self.check("find", path)
        return super().find(path, *args, **kwargs)

    def cat_file(self, path: str, start: Any = None, end: Any = None, **kwargs: Any):
        self.check("cat_file", path)
        return super().cat_file(path, start=start, end=end, **kwargs)

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        self.check("pipe_file", path)
        super().pipe_file(path, value, *args, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.check("makedirs", path)
        super().makedirs(path, exist_ok=exist_ok)

    def rm_file(self, path: str) -> None:
        self.check("rm_file", path)
        super().rm_file(path)

    def rmdir(self, path: str) -> None:
        self.check("rmdir", path)
        super().rmdir(path)


class _FaultyMemorySink(transfer.MemorySink):
    """The memory sink, whose commit may fail as a full disk's would."""

    fs: FaultyMemoryFileSystem

    def _publish(self, buffer: Any, mtime_ns: int | None) -> None:
        self.fs.check("write", self.path)
        super()._publish(buffer, mtime_ns)


def _open_memory_sink(fs: FaultyMemoryFileSystem, path: str, **_: Any):
    return _FaultyMemorySink(fs, path)


def _register(protocol: str, cls: type) -> None:
    # The dotted name makes fsspec.available_protocols() list the protocol,
    # which the command line checks; the class makes it open without import.
    name = f"{__name__}.{cls.__name__}"
    fsspec.register_implementation(protocol, name, clobber=True)
    fsspec.register_implementation(protocol, cls, clobber=True)


transfer.register_sink(FaultyMemoryFileSystem, _open_memory_sink)
_register(MEMORY_PROTOCOL, FaultyMemoryFileSystem)


# S3 --------------------------------------------------------------------------


def s3_error(fault: str, operation: str, path: str, endpoint: str) -> Exception:
    """Return the exception botocore raises for ``fault`` in a client call."""
    message = describe(fault, operation, path)
    responses = {
        "slowdown": ("SlowDown", 503, f"Please reduce your request rate ({message})"),
        "denied": ("AccessDenied", 403, f"Access Denied ({message})"),
        "missing": ("NoSuchKey", 404, f"The specified key does not exist ({message})"),
    }
    if fault in responses:
        code, status, text = responses[fault]
        response = {
            "Error": {"Code": code, "Message": text},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return botocore.exceptions.ClientError(response, operation)  # type: ignore[arg-type]
    # aiobotocore turns aiohttp's connection and timeout errors into these.
    if fault == "reset":
        return botocore.exceptions.EndpointConnectionError(
            endpoint_url=endpoint,
            error=ConnectionResetError(errno.ECONNRESET, message),
        )
    if fault == "timeout":
        return botocore.exceptions.ReadTimeoutError(
            endpoint_url=endpoint, error=TimeoutError(message)
        )
    raise ValueError(f"S3 has no fault {fault!r}")


def _request_path(kwargs: dict[str, Any]) -> str:
    key = kwargs.get("Key", kwargs.get("Prefix", ""))
    return f"{kwargs.get('Bucket', '')}/{key}"


class _FaultyClient:
    """A botocore S3 client whose API calls fail as a plan decides."""

    def __init__(self, client: Any, plan: FaultPlan) -> None:
        self._client = client
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._client.meta.method_to_api_mapping:
            return attribute

        @functools.wraps(attribute)
        async def call(*args: Any, **kwargs: Any) -> Any:
            path = _request_path(kwargs)
            fault = self._plan.draw(name, path)
            if fault is not None:
                endpoint = self._client.meta.endpoint_url
                raise s3_error(fault, name, path, endpoint)
            response = await attribute(*args, **kwargs)
            if name == "get_object" and self._cuts_body(path):
                response["Body"] = _CutBody(response["Body"], path)
            return response

        return call

    def _cuts_body(self, path: str) -> bool:
        # Only a plan that names read_body cuts bodies, so plans for the
        # other calls keep their draws.
        if "read_body" not in self._plan.operations:
            return False
        return self._plan.draw("read_body", path) is not None


class _CutBody:
    """A response body whose connection drops before its end.

    aiohttp raises ``ClientPayloadError`` when the server closes the
    connection in the middle of a body, and aiobotocore passes it on.
    """

    def __init__(self, body: Any, path: str) -> None:
        self._body = body
        self._message = describe("reset", "read_body", path)

    async def read(self, *args: Any) -> bytes:
        raise aiohttp.ClientPayloadError(
            f"Response payload is not completed ({self._message})"
        )

    def close(self) -> None:
        self._body.close()


class FaultyS3Filesystem(S3Filesystem):
    """journalq's S3 filesystem whose requests fail as :attr:`plan` decides.

    Every S3 request (``put_object``, ``get_object``, ``head_object``,
    ``list_objects_v2``...) draws, with its bucket and key as the path.
    """

    protocol = (S3_PROTOCOL,)
    cachable = False
    # s3fs tries each request up to 5 times, sleeping between tries. One
    # try leaves the retrying to journalq, whose retries the tests check.
    retries = 1

    def __init__(self, *args: Any, **options: Any) -> None:
        self.plan = FaultPlan.from_options(options)
        super().__init__(*args, **options)
        unknown = set(self.plan.faults) - {*TRANSIENT, "denied", "missing"}
        if unknown:
            raise ValueError(f"S3 has no faults {unknown}")

    async def get_s3(self, bucket: str | None = None) -> Any:
        return _FaultyClient(await super().get_s3(bucket), self.plan)


_register(S3_PROTOCOL, FaultyS3Filesystem)


# GCS -------------------------------------------------------------------------


def gcs_error(fault: str, method: str, path: str) -> Exception:
    """Return the exception gcsfs raises for ``fault`` after its own retries."""
    message = describe(fault, method, path)
    if fault == "slowdown":
        return HttpError({"code": 503, "message": f"Service Unavailable ({message})"})
    if fault == "reset":
        return aiohttp.ServerDisconnectedError(message)
    if fault == "timeout":
        return aiohttp.ServerTimeoutError(message)
    raise ValueError(f"GCS has no fault {fault!r}")


_BUCKET_IN_PATH: Final = re.compile(r"\bb/[^/]+")
#: The object name in the JSON part of a one-request upload's body.
_UPLOADED_NAME: Final = re.compile(rb'^\{"name": ("(?:[^"\\]|\\.)*")', re.MULTILINE)


def _request_target(path: str, args: tuple[Any, ...], data: Any) -> str:
    """Return what a gcsfs request names, the same in every test session.

    gcsfs passes a template (``b/{}/o/{}`` with the bucket and the object
    as ``args``) or a whole URL. The server's port and the bucket's name
    change between sessions, so both are left out. A one-request upload
    names its object in its body, so that name is appended.
    """
    if args:
        path = path.format(*(str(arg) for arg in args))
    if "://" in path:
        path = urllib.parse.urlsplit(path).path
    target = _BUCKET_IN_PATH.sub("b/*", urllib.parse.unquote(path))
    if isinstance(data, bytes | bytearray | memoryview):
        found = _UPLOADED_NAME.search(bytes(data[:4096]))
        if found is not None:
            target = f"{target}/{json.loads(found[1])}"
    return target


class _FaultyRequests(GCSFileSystem):
    """gcsfs's requests, failing as the instance's ``plan`` decides.

    It comes after journalq's class in the order of
    :class:`FaultyGCSFilesystem`, so journalq's error rules see each fault
    as they see a response of the server.
    """

    plan: FaultPlan

    async def _request(self, method: str, path: str, *args: Any, **kwargs: Any):
        target = _request_target(path, args, kwargs.get("data"))
        operation = method.lower()
        fault = self.plan.draw(operation, target)
        if fault is not None:
            raise gcs_error(fault, operation, target)
        return await super()._request(method, path, *args, **kwargs)


class FaultyGCSFilesystem(GCSFilesystem, _FaultyRequests):
    """journalq's GCS filesystem whose requests fail as :attr:`plan` decides.

    Every HTTP request draws, by its lower-case method (``get``, ``post``,
    ``put``...) and the path and object it names, bucket left out.
    """

    protocol = (GCS_PROTOCOL,)
    cachable = False

    def __init__(self, *args: Any, **options: Any) -> None:
        self.plan = FaultPlan.from_options(options)
        super().__init__(*args, **options)
        unknown = set(self.plan.faults) - set(TRANSIENT)
        if unknown:
            raise ValueError(f"GCS has no faults {unknown}")


_register(GCS_PROTOCOL, FaultyGCSFilesystem)
