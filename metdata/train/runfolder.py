"""The run folder RUN (a local folder or ``s3://`` prefix) that ``metdata train`` writes and
``evaluate``, ``predict`` and ``serve`` read: its files, its settings (run.json) and the rule
for resuming into it, its checkpoints, and the local folder a run works in.

RUN ends with::

    model.keras  best.keras  run.json  split.parquet  history.json  curves.png
    logs/        TensorBoard's per-epoch scalars (train/, validation/)
    backup/      (only while training: Keras' BackupAndRestore state)

The checkpoints appear whole or not at all (``save_checkpoint``: a temporary file renamed, one
PUT on S3) and carry their epoch and metrics inside (``checkpoint_note``); a resumed run drops
the ones a kill left damaged (``check_resume``), a run ends ``complete`` only with checkpoints
Keras opens (``finish_checkpoints``), and a damaged one is refused with the fix before Keras
reads it (``check_checkpoint``). On S3 a run works in a local temporary folder
(``RunFolder``), uploads it at each epoch end and downloads the backup before resuming.

Keras is imported only by ``finish_checkpoints``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from metdata.errors import UserError
from metdata.storage.dataset import Dataset
from metdata.train import training

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
HISTORY = "history.json"
SPLIT = "split.parquet"
CURVES = "curves.png"
BACKUP = "backup"
LOGS = "logs"
BEST, LAST = "best.keras", "model.keras"
#: ``--checkpoint``'s choices and the files they name.
CHECKPOINTS = {"best": BEST, "last": LAST}
OUTPUTS = (LAST, BEST, RUN_FILE, SPLIT, HISTORY, CURVES, LOGS)
#: settings recorded in run.json that a resumed run may change: how it runs, not what it learns
FREE = frozenset({"jit", "steps_per_execution", "cache_mb"})
#: the value of a setting newer than a run.json that lacks it (that run was trained with it)
IMPLIED = {
    "learning_rate": 1e-3,
    "weights": "none",
    "head_epochs": 0,
    "fine_tune_layers": 20,
    "fine_tune_lr": 1e-5,
    "precision": "float32",
    "lr_schedule": "constant",
    "lr_patience": 3,
    "early_stopping": 0,
}
NOTE = "metdata.json"  # inside a checkpoint's zip: the epoch and metrics of its weights


class RunMismatch(UserError):
    """RUN holds another run; nothing is overwritten."""


def settings(options, run: training.RunData) -> dict:
    """The run.json content of a run with ``options`` (a ``TrainOptions``), without the completion fields."""
    fields = asdict(options)
    fields.pop("out")
    fields.pop("devices")  # the same run may resume on another number of devices
    return {
        **fields,
        "data": run.store.dataset.url,
        "classes": list(run.split.slots.classes),
        "size": run.split.slots.size,
        "resize": run.split.slots.resize,
        "fingerprint": run.fingerprint,
    }


def check_settings(existing: dict, wanted: dict, run_url: str) -> None:
    """A run resumes into RUN only with the settings its run.json holds, except the ``FREE`` ones
    (a run.json from before fingerprints resumes on its other settings; one from before a newer
    setting holds its ``IMPLIED`` value).

    Raises:
        RunMismatch: naming each setting that differs, and the fix.
    """
    diff = {
        k: (existing.get(k, IMPLIED.get(k)), v)
        for k, v in wanted.items()
        if existing.get(k, IMPLIED.get(k)) != v and k not in FREE and (k != "fingerprint" or k in existing)
    }
    if diff:
        raise RunMismatch(
            f"{run_url} holds another run (run.json differs: "
            + ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            + "); nothing was overwritten. Give another --out, or rerun with its settings to resume"
        )


class RunFolder:
    """RUN and the local folder the run works in (RUN itself when it is local and this
    process writes it; a temporary folder on S3 and for the other workers of a multi-worker run).
    """

    def __init__(self, url: str, storage_options: dict, writer: bool = True):
        self.remote = Dataset(url, storage_options)
        self.writer = writer
        if self.remote.local and writer:
            self.work = Path(self.remote.path(""))
            self._tmp = None
        else:
            self._tmp = tempfile.mkdtemp(prefix="metdata-train-")
            self.work = Path(self._tmp)
        self.work.mkdir(parents=True, exist_ok=True)
        self.scratch = Dataset(str(self.work))  # files of the working folder, written whole

    def read_settings(self) -> dict | None:
        """RUN's run.json, or None when there is none."""
        return self.remote.read_json(RUN_FILE) if self.remote.exists(RUN_FILE) else None

    def start(self, settings: dict, split: pa.Table) -> None:
        """Mark RUN as started with these settings (``complete`` false) and keep its split (``Split.table``)."""
        self.scratch.write_json(RUN_FILE, {**settings, "complete": False})
        self.upload((RUN_FILE,))
        self.scratch.write_table(SPLIT, split)
        self.upload((SPLIT,))

    def download_state(self) -> None:
        """Bring back the backup and history of an interrupted run (unless it works in RUN)."""
        if self.remote.local and self.writer:
            return
        for name in (BACKUP, HISTORY, BEST):
            if self.remote.exists(name):
                self.remote.fs.get(self.remote.path(name), str(self.work / name), recursive=True)

    def upload(self, names: tuple[str, ...]) -> None:
        """Copy these files or folders of the working folder to RUN (S3 runs, and only the writer)."""
        if self.remote.local or not self.writer:
            return
        for name in names:
            path = self.work / name
            if path.is_dir():  # file by file: fs.put of a folder nests it when it already exists
                for file in sorted(p for p in path.rglob("*") if p.is_file()):
                    self.remote.write_bytes(f"{name}/{file.relative_to(path).as_posix()}", file.read_bytes())
            elif path.exists():
                self.remote.write_bytes(name, path.read_bytes())

    def remove_remote(self, name: str) -> None:
        """Delete ``name`` from an S3 RUN (the writer only)."""
        if self.writer and not self.remote.local and self.remote.exists(name):
            self.remote.fs.rm(self.remote.path(name), recursive=True)

    def close(self) -> None:
        """Remove the temporary working folder, if any."""
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def local_copy(run: Dataset, name: str, into: Path) -> Path:
    """A local path of RUN's file ``name``: itself when RUN is local, else a copy in ``into``.

    Raises:
        UserError: RUN has no such file.
    """
    if not run.exists(name):
        raise UserError(f"{run.url} has no {name}: train a model there first ('metdata train --out {run.url}')")
    if run.local:
        return Path(run.path(name))
    target = into / name
    target.write_bytes(run.read_bytes(name))
    return target


def read_split(
    run: Dataset, columns: list[str] | None = None, side: str = "all", classes: list[str] | None = None
) -> list[dict]:
    """RUN's split.parquet as rows (objectID, slot, class, side): those of ``side`` (val, train
    or all) and, with ``classes``, of those classes (``columns`` must then hold ``class``).

    Raises:
        UserError: RUN has no split.parquet.
    """
    if not run.exists(SPLIT):
        raise UserError(f"{run.url} has no {SPLIT}: it was not written by 'metdata train'")
    rows = run.read_table(SPLIT, columns=columns).to_pylist()
    return [r for r in rows if (side == "all" or r["side"] == side) and (classes is None or r["class"] in classes)]


def save_checkpoint(model, path: Path, note: dict) -> None:
    """Save ``model`` to ``path`` whole or not at all, with ``note`` (its epoch and metrics) inside.

    Keras writes the zip in place, so a kill mid-save would leave a truncated file: this saves to a
    hidden temporary ``.keras`` in the same folder, adds the note, syncs it and renames it over ``path``.
    """
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.keras")
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(NOTE, json.dumps(note))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_note(path: Path) -> dict | None:
    """The note of a whole checkpoint (``{}`` for one saved before notes); None when the file is
    missing, truncated, or not a Keras archive (every member's CRC is checked)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"config.json", "metadata.json", "model.weights.h5"} <= names or archive.testzip() is not None:
                return None
            return json.loads(archive.read(NOTE)) if NOTE in names else {}
    except (OSError, zipfile.BadZipFile, ValueError) as exc:  # EOFError is an OSError here; JSON errors ValueErrors
        log.debug("%s is not a whole checkpoint: %s", path, exc)
        return None


def check_checkpoint(path: Path, run_url: str, name: str) -> dict:
    """The note of RUN's checkpoint ``name`` (at the local ``path``), checked whole before Keras opens it.

    Raises:
        UserError: naming the damaged checkpoint and how to get a whole one.
    """
    note = checkpoint_note(path)
    if note is None:
        other = "last" if name == BEST else "best"
        raise UserError(
            f"{run_url}/{name} is damaged (not a whole Keras archive: truncated or overwritten). Use the other "
            f"checkpoint (--checkpoint {other}), or delete {run_url}/{RUN_FILE} and rerun "
            "'metdata train' with the same settings to train the run again"
        )
    return note


def check_finished(run_url: str, storage_options: dict) -> None:
    """A complete run's checkpoints must be whole.

    Raises:
        UserError: naming the damaged checkpoint and how to get a whole one.
    """
    run = Dataset(run_url, storage_options)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (BEST, LAST):
            check_checkpoint(local_copy(run, name, Path(tmp)), run_url, name)


def check_resume(work: Path) -> None:
    """Before (re)starting fit: drop the checkpoints a kill left damaged and stray temporary saves.

    A damaged ``best.keras`` is discarded with a warning: its weights are lost, so the best is
    tracked again from the resumed epoch (run.json's ``best_epoch`` says which epoch it holds).
    A damaged backup is discarded too: the run starts again from its first epoch.
    """
    for stray in work.glob(".*.tmp.keras"):
        stray.unlink(missing_ok=True)
    for name in (BEST, LAST):
        path = work / name
        if path.exists() and checkpoint_note(path) is None:
            log.warning(
                "%s is damaged (truncated by a kill mid-write?): discarded; %s",
                path,
                "the best is tracked again from the resumed epoch" if name == BEST else "the next epoch rewrites it",
            )
            path.unlink()
    metadata = work / BACKUP / "training_metadata.json"
    try:
        if metadata.exists():
            json.loads(metadata.read_text())
    except (ValueError, OSError) as exc:
        log.warning("the backup in %s is damaged (%s): discarded; training restarts from the first epoch", work, exc)
        shutil.rmtree(work / BACKUP, ignore_errors=True)


def finish_checkpoints(model, work: Path, last: dict, monitor: str) -> dict:
    """Make sure both checkpoints are whole and current before the run is called complete;
    returns best.keras' note.

    The model as fit left it holds the last epoch's weights (restored from the backup when a
    resume ran no epoch). It is saved, noted with that epoch's metrics, over a checkpoint that is
    missing or damaged, over a model.keras of an earlier epoch, and over a best.keras the last
    epoch beats (a kill between the backup and the checkpoint saves of the last epoch).
    """
    import keras

    for name in (LAST, BEST):
        note = checkpoint_note(work / name)
        if name == LAST:
            stale = note is None or ("epoch" in note and note["epoch"] != last.get("epoch"))
        else:
            stale = note is None or (monitor in note and monitor in last and last[monitor] > note[monitor])
        if stale and last:
            log.warning("%s is missing, damaged or behind the last epoch: saving the last epoch's model there", name)
            save_checkpoint(model, work / name, last)
        keras.models.load_model(work / name, compile=False)  # opens, as predict and evaluate will
    return checkpoint_note(work / BEST) or {}
