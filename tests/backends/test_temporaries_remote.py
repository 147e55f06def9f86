"""Temporary files an SFTP copy killed with SIGKILL leaves on the server.

The sshd of the tests serves this machine's disk, so the test looks for
the temporary file in the store's directory directly.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from stalled_helpers import kill, start_script, wait_for_temporary
from store_helpers import Store

from journalq import StorageQueue

#: Copies a FIFO to the SFTP store in a queue, then runs it: the read of
#: the FIFO blocks, with the temporary file open on the server. Its
#: arguments are the queue, the source, the destination URL, the
#: destination path and its storage options as JSON.
STALLED_COPY = textwrap.dedent(
    """
    import json, sys
    from journalq import StorageQueue

    queue_dir, source, url, destination, options = sys.argv[1:]
    with StorageQueue(
        source, url, name=queue_dir, destination_options=json.loads(options)
    ) as queue:
        queue.copy_file(source, destination)
        queue.run(parallelism=1)
    """
)


def test_killed_sftp_copy_canceled_leaves_nothing(
    tmp_path: Path, sftp_store: Store
) -> None:
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    queue = tmp_path / "queue"
    out = Path(sftp_store.path("out"))
    out.mkdir()
    process = start_script(
        STALLED_COPY,
        str(queue),
        str(fifo),
        sftp_store.url,
        sftp_store.path("out/target"),
        json.dumps(sftp_store.options),
    )
    temporary = wait_for_temporary(out, queue, process)
    kill(process)

    with StorageQueue(name=queue, destination_options=sftp_store.options) as reopened:
        leftovers = sorted(out.iterdir())
        canceled = reopened.cancel()

    assert temporary.name.startswith(".target.jq-")
    assert leftovers == []
    assert len(canceled) == 1
