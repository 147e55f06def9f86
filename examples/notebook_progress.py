# %% [markdown]
# # A progress bar for a journalq run, in a notebook or a terminal
#
# `journalq.progress.RunProgress` folds a run's events into files, bytes,
# rate and ETA; `ProgressDisplay` draws them with rich, which renders in
# Jupyter as well as on a terminal. Run the cells in order, or the whole
# file with `python examples/notebook_progress.py`.

# %%
import tempfile
from pathlib import Path

from journalq import StorageQueue
from journalq.progress import ProgressDisplay, RunProgress

scratch = Path(tempfile.mkdtemp(prefix="journalq-notebook-"))
source, destination = scratch / "source", scratch / "backup"
for index in range(500):
    path = source / f"part{index % 5}" / f"sample{index:04d}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([index % 256]) * (1024 * (index % 64 + 1)))

# %% The run, drawn while it works
with StorageQueue(str(source), str(destination), scratch / "queue") as queue:
    queue.sync(str(source), str(destination))
    progress = RunProgress.for_queue(queue)
    with ProgressDisplay(progress):
        summary = queue.run(on_event=progress, event_types=progress.event_types)

print(
    summary.copied, "files,", summary.bytes, "bytes in", round(summary.elapsed, 2), "s"
)

# %% A view of the totals, for a display of your own
view = progress.view()
print(view.files_done, "of", view.files_total, "files;", view.line())

# %% [markdown]
# An fsspec callback serves too: `run(callback=...)` takes any
# `fsspec.callbacks.Callback`, here fsspec's tqdm bar (`pip install tqdm`).
# It gets the run's total bytes with `set_size` and the bytes copied with
# `relative_update`. A callback that overrides `branched` also gets one
# child callback per file, as with `fs.get`.

# %% The next run, drawn by fsspec's TqdmCallback
from fsspec.callbacks import TqdmCallback

for index in range(0, 500, 50):
    (source / f"part{index % 5}" / f"sample{index:04d}.bin").write_bytes(
        b"changed" * 2000
    )
with StorageQueue(str(source), str(destination), scratch / "queue") as queue:
    queue.sync(str(source), str(destination))
    bar = TqdmCallback(tqdm_kwargs={"unit": "B", "unit_scale": True})
    summary = queue.run(callback=bar)
    bar.close()
print(summary.copied, "files changed and copied again")
