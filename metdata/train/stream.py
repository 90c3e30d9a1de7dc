"""The training input stream: a store's slots as whole ``tf.data`` batches, at the speed of chunk decoding.

Each epoch is planned in NumPy (``epoch_order``): the chunks in an order shuffled from the seed and
the epoch, a window of a few chunks at a time, the samples of a window shuffled together. A thread
pool reads whole chunks ahead of use (``chunk_reader``: numcodecs decodes without the GIL, so the
reads use every core), each batch is copied straight out of the decoded chunks into an aligned
array that TensorFlow takes without a copy, and ``tf.data`` gets whole batches: no per-sample
element, no shuffle buffer, no per-chunk hand-off. Memory is bounded by the chunks read ahead (and
by ``cache_mb`` when decoded chunks are cached), whatever the store's size.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from metdata.storage.imagestore import CorruptChunk, ImageStore
from metdata.train.chunkio import MB, BatchBuffers, ChunkCache, chunk_reader
from metdata.train.quiet_tf import tensorflow
from metdata.train.training import Slots, TrainingDataError

log = logging.getLogger(__name__)

REMOTE_READS = 16  # chunk reads in flight from S3 (about 2 MB each)
QUEUED = 4  # batches made ahead of tf.data's call for them
_END = object()  # the end of an epoch's batches


@dataclass(frozen=True)
class InputOptions:
    """How the input pipeline reads and batches.

    Attributes:
        batch_size: the batch size of this pipeline: the global batch (per-replica batch x replicas)
            on one machine, the per-replica batch for each worker's pipeline of a multi-worker run.
        shuffle: shuffle chunk order and samples (training) or keep the store's order.
        seed: seed of both shuffles; the same seed gives the same batches (epoch by epoch).
        window: chunks whose samples are shuffled together.
        parallel_reads: threads reading (decoding) chunks at once; None: one per core from a local
            store, at least ``REMOTE_READS`` from S3 (whose reads mostly wait). The stream reads
            ``max(window, parallel_reads)`` chunks ahead of the batch it serves, so it holds about
            twice that many chunks, whatever the store's size.
        weights: a loss weight per label (``class_weights``): batches become (x, y, weight).
        repeat: repeat without end (a multi-worker run counts its steps instead).
        shard: (this input pipeline, number of pipelines): read only every n-th chunk.
        cache_mb: keep decoded chunks in memory up to this many MB (2**20 bytes); 0: none.
        first_epoch: the epoch of the first iteration (a resumed run's: its batches are the ones
            the run would have had, had it not stopped).
    """

    batch_size: int = 64
    shuffle: bool = True
    seed: int = 0
    window: int = 8
    parallel_reads: int | None = None
    weights: dict[int, float] | None = None
    repeat: bool = False
    shard: tuple[int, int] = (0, 1)
    cache_mb: float = 0
    first_epoch: int = 0

    def __post_init__(self):
        reads = 1 if self.parallel_reads is None else self.parallel_reads
        if min(self.batch_size, self.window, reads, self.first_epoch + 1) < 1 or not 0 <= self.cache_mb < math.inf:
            raise ValueError(
                f"{self}: batch_size, window and parallel_reads are whole numbers from 1, first_epoch from 0, "
                "cache_mb finite from 0"
            )


_failed_reads: list[str] = []  # the chunk reads that failed inside TensorFlow's pipeline threads
_failed_lock = threading.Lock()


@contextmanager
def reading_chunks():
    """Turn TensorFlow's wrapping of a failed chunk read (inside ``build_dataset``'s pipeline) back
    into the ``CorruptChunk`` that names the chunk; other errors pass unchanged.

    Raises:
        CorruptChunk: a chunk read failed while the block ran.
    """
    import tensorflow as tf

    with _failed_lock:
        _failed_reads.clear()
    try:
        yield
        return
    except tf.errors.OpError:  # from_generator wraps the read's error (its type varies with the op)
        with _failed_lock:
            found = _failed_reads[0] if _failed_reads else None
            _failed_reads.clear()
        if found is None:
            raise
    # Out of the except block, TensorFlow's error and the frames it held are gone: collect the input
    # pipeline now, while its reading threads and Zarr's still run (left to interpreter exit, they can hang it).
    gc.collect()
    raise CorruptChunk(found)


def chunk_plan(slots: Slots) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each chunk holding a slot: (offsets inside the chunk, labels), in slot order."""
    chunks = slots.slot // slots.chunk
    plan = {}
    for c in np.unique(chunks).tolist():
        mask = chunks == c
        plan[c] = (slots.slot[mask] - c * slots.chunk, slots.label[mask])
    return plan


def epoch_order(sizes: Sequence[int], window: int, shuffle: bool, seed: int, epoch: int):
    """One epoch's plan over chunks holding ``sizes[i]`` samples each (samples numbered chunk after
    chunk): (the chunks in reading order, the samples in the order they are served).

    Without ``shuffle``: every chunk and sample in order. With it: the chunks in an order drawn
    from (``seed``, ``epoch``), and the samples of each ``window`` of chunks (in that order)
    shuffled together. Pure: the same arguments give the same plan on every machine.

    >>> order, samples = epoch_order([2, 1, 3], window=2, shuffle=False, seed=0, epoch=0)
    >>> order.tolist(), samples.tolist()
    ([0, 1, 2], [0, 1, 2, 3, 4, 5])
    >>> order, samples = epoch_order([2, 1, 3], window=2, shuffle=True, seed=0, epoch=0)
    >>> sorted(samples.tolist()) == list(range(6))
    True
    """
    sizes = np.asarray(sizes, np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if not shuffle:
        return np.arange(len(sizes)), np.arange(starts[-1])
    rng = np.random.default_rng([seed % 2**64, epoch])
    order = rng.permutation(len(sizes))
    parts = []
    for w in range(0, len(order), window):
        mine = order[w : w + window]
        parts.append(rng.permutation(np.concatenate([np.arange(starts[c], starts[c + 1]) for c in mine])))
    return order, np.concatenate(parts) if parts else np.zeros(0, np.int64)


class Stream:
    """The batches of one input pipeline: called by ``tf.data`` once per epoch, it yields
    (images, labels[, weights]) NumPy batches.

    Args:
        read: ``(chunk number, buffer or None) -> the whole chunk`` (``chunk_reader``).
        slots: the slots to serve (``Slots``), already limited to this pipeline's shard.
        options: ``InputOptions``.
        damaged: ``(chunk, exception) -> CorruptChunk`` for a chunk that does not decode.
    """

    def __init__(
        self, read: Callable[[int, np.ndarray | None], np.ndarray], slots: Slots, options: InputOptions, damaged
    ):
        self.read, self.options, self.damaged = read, options, damaged
        self.chunk, self.size = slots.chunk, slots.size
        self.slot, self.label = slots.slot, slots.label
        self.chunks, self.starts = np.unique(slots.slot // slots.chunk, return_index=True)
        self.sizes = np.diff(np.append(self.starts, len(slots.slot)))
        self.weights = None
        if options.weights is not None:
            self.weights = np.array([options.weights.get(i, 0.0) for i in range(len(slots.classes))], np.float32)
        self.cache = ChunkCache(options.cache_mb * MB) if options.cache_mb > 0 else None
        self._epochs = itertools.count(options.first_epoch)
        self._spare: deque[np.ndarray] = deque()  # chunk buffers done with, to decode into again
        self._buffers = BatchBuffers()
        self._failed: CorruptChunk | None = None

    def __call__(self) -> Iterator[tuple[np.ndarray, ...]]:
        """The next epoch's batches, made ahead by a thread of their own: tf.data calls back into
        Python for each element, and that call costs milliseconds of hand-off that the making of
        the next batch overlaps instead of following."""
        epoch = next(self._epochs)  # each iteration of the dataset is the next epoch
        ready: queue.Queue = queue.Queue(maxsize=QUEUED)
        stop = threading.Event()
        threading.Thread(target=self._produce, args=(epoch, ready, stop), name="metdata-stream", daemon=True).start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):  # a producer waiting to put sees the stop
                while True:
                    ready.get_nowait()

    def _produce(self, epoch: int, ready: queue.Queue, stop: threading.Event) -> None:
        """Put the epoch's batches into ``ready``, then ``_END`` (or the error that ended them)."""

        def put(item) -> bool:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    ready.put(item, timeout=0.1)
                    return True
            return False

        batches = self._batches(epoch)
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except Exception as exc:  # a thread's boundary: whatever ended the epoch is raised in the consumer's
            put(exc)
        finally:
            batches.close()

    def _batches(self, epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        o = self.options
        order, samples = epoch_order(self.sizes, o.window, o.shuffle, o.seed, epoch)
        place = np.searchsorted(self.chunks, self.slot[samples] // self.chunk)  # each sample's chunk (index)
        reading = np.empty_like(order)
        reading[order] = np.arange(len(order))  # each chunk's position in the reading order
        batches = -(-len(samples) // o.batch_size)
        last = np.zeros(len(order), np.int64)  # the batch that uses each chunk last
        np.maximum.at(last, place, np.arange(len(samples)) // o.batch_size)
        release: dict[int, list[int]] = {}
        for c, b in enumerate(last.tolist()):
            release.setdefault(b, []).append(c)
        threads = o.parallel_reads or os.cpu_count() or 2
        ahead = max(o.window, threads)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="metdata-chunks")
        pending: deque[tuple[int, Future]] = deque()
        live: dict[int, tuple[np.ndarray, bool]] = {}
        submitted = 0
        try:
            for b in range(batches):
                mine = slice(b * o.batch_size, (b + 1) * o.batch_size)
                needed = int(reading[place[mine]].max())
                while submitted < len(order) and submitted <= needed + ahead:
                    c = int(order[submitted])
                    pending.append((c, pool.submit(self._read, c)))
                    submitted += 1
                while pending and reading[pending[0][0]] <= needed:
                    c, future = pending.popleft()
                    live[c] = future.result()
                yield self._batch(samples[mine], place[mine], live)
                for c in release.get(b, ()):
                    block, compact = live.pop(c)
                    if not compact and len(self._spare) <= o.window + ahead:  # as many as are ever in use
                        self._spare.append(block)
        finally:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _batch(self, samples: np.ndarray, place: np.ndarray, live: dict) -> tuple[np.ndarray, ...]:
        """The batch of these samples, copied out of their decoded chunks."""
        x = self._buffers.take((len(samples), self.size, self.size, 3))
        rows = self.slot[samples] - self.chunks[place] * self.chunk  # in the whole chunk
        kept = samples - self.starts[place]  # among the chunk's kept samples
        for i, (c, row, k) in enumerate(zip(place.tolist(), rows.tolist(), kept.tolist(), strict=True)):
            block, compact = live[c]
            x[i] = block[k if compact else row]
        y = self.label[samples]
        return (x, y) if self.weights is None else (x, y, self.weights[y])

    def _read(self, c: int) -> tuple[np.ndarray, bool]:
        """Chunk ``c`` (an index into ``self.chunks``) decoded: (the whole chunk, False) or, from or
        into the cache, (its kept samples only, True).

        Raises:
            CorruptChunk: the chunk does not decode (or an earlier one did not: read no more).
        """
        if self.cache is not None and (held := self.cache.get(c)) is not None:
            return held, True
        if self._failed is not None:  # the stream stops at its first damaged chunk: read no more (never block exit)
            raise self._failed
        chunk = int(self.chunks[c])
        try:
            block = self.read(chunk, self._spare.pop() if self._spare else None)
        except (RuntimeError, ValueError, OSError) as exc:  # numcodecs' decode errors are RuntimeErrors
            self._failed = error = self.damaged(chunk, exc)
            with _failed_lock:
                _failed_reads.append(str(error))
            raise error from exc
        if self.cache is not None:
            mine = self.slot[self.starts[c] : self.starts[c] + self.sizes[c]] - chunk * self.chunk
            if self.cache.has_room(len(mine) * block[0].nbytes):
                kept = np.ascontiguousarray(block[mine])
                if self.cache.offer(c, kept):
                    return kept, True
        return block, False


def build_dataset(store: ImageStore, slots: Slots, options: InputOptions):
    """A ``tf.data.Dataset`` of (uint8 images (B, S, S, 3), int32 labels (B,)) over the slots,
    plus float32 weights (B,) when ``options.weights`` is set.

    Whole batches of ``options.batch_size`` (the last one smaller), served by a ``Stream``
    (see the module's docstring) from the store, local or on S3. Deterministic: the
    same seed gives the same batches, epoch by epoch (each iteration of the dataset is the next
    epoch). With ``shard=(i, n)`` the pipeline reads only the chunks ``i, i+n, ...`` of the sorted
    chunk list: the input of worker ``i`` of ``n`` (``tf.distribute.InputContext``). Chunks are
    dealt round-robin, not balanced by their slot counts: with every worker running the same
    number of steps, a worker holding fewer training images sees each of them slightly more often.
    Under a ``MirroredStrategy`` each batch is split between the replicas.

    Raises:
        TrainingDataError: this shard has no chunk.
    """
    tf = tensorflow()
    index, pipelines = options.shard
    chunks = np.unique(slots.slot // slots.chunk)[index::pipelines]
    if not len(chunks):
        raise TrainingDataError(f"input pipeline {index} of {pipelines} has no chunk: use fewer workers")
    mine = slots.take(np.isin(slots.slot // slots.chunk, chunks))
    if options.parallel_reads is None and not store.dataset.local:
        options = replace(options, parallel_reads=max(REMOTE_READS, os.cpu_count() or 2))
    stream = Stream(
        chunk_reader(store),
        mine,
        options,
        store.damaged,
    )
    size = slots.size
    spec = [tf.TensorSpec((None, size, size, 3), tf.uint8), tf.TensorSpec((None,), tf.int32)]
    if options.weights is not None:
        spec.append(tf.TensorSpec((None,), tf.float32))
    data = tf.data.Dataset.from_generator(stream, output_signature=tuple(spec))
    if options.repeat:
        data = data.repeat()
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    opts.deterministic = True
    return data.with_options(opts).prefetch(2)
