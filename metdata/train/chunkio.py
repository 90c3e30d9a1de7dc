"""The image array's chunks and the stream's batches in memory: read whole chunks straight from
the store's objects (``chunk_reader``), keep decoded ones within a byte budget (``ChunkCache``),
and hand batches to TensorFlow without a copy (``aligned_empty``, ``BatchBuffers``).

NumPy, numcodecs and the store's filesystem only: no TensorFlow (``metdata.train.stream`` wires these
into ``tf.data``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

import numpy as np

from metdata.storage.imagestore import ImageStore

MB = 2**20
ALIGN = 64  # TensorFlow's alignment of tensor memory (EIGEN_MAX_ALIGN_BYTES)


def chunk_reader(store: ImageStore) -> Callable[[int, np.ndarray | None], np.ndarray]:
    """A function ``read(c, out)`` reading chunk ``c`` of the store's image array whole, as a
    (chunk, S, S, 3) uint8 array: ``out`` (a buffer of that shape to reuse) or a new one.

    When the array's codecs are the ones ``metdata images`` writes (bytes, then zstd or Blosc),
    the chunk's object is read through the dataset's filesystem and decoded by numcodecs straight
    into the array, in the calling thread: Zarr's read of one chunk costs about twice its decode
    (three thread hand-offs and a copy). Any other array is read through Zarr.

    The function raises ``RuntimeError``/``ValueError`` (a chunk that does not decode to its
    size) or ``OSError`` (a chunk that cannot be read).
    """
    import numcodecs

    dataset, images = store.dataset, store.images
    from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

    shape = tuple(images.chunks)
    codecs = tuple(getattr(images.metadata, "codecs", ()))
    fast = (
        images.dtype == np.uint8
        and shape[1:] == tuple(images.shape[1:])
        and len(codecs) == 2
        and isinstance(codecs[0], BytesCodec)
        and isinstance(codecs[1], ZstdCodec | BloscCodec)
    )
    if not fast:
        return lambda c, out=None: np.asarray(images[c * shape[0] : (c + 1) * shape[0]])
    decoder = numcodecs.Zstd() if isinstance(codecs[1], ZstdCodec) else numcodecs.Blosc()
    fill = images.metadata.fill_value
    # s3fs asks for an object's size (a HEAD) before each whole read unless told to read it in one GET
    whole = {"max_concurrency": 1} if "s3" in dataset.fs.protocol else {}
    most = 2 * int(np.prod(shape)) + 4096  # no codec makes a chunk's object twice its images
    mine = threading.local()  # each reading thread's buffer of compressed bytes (a local store's)

    def fetch(path: str):
        if not dataset.local:  # a Range GET one byte past the bound: a huge object is refused, never read whole
            raw = dataset.fs.cat_file(path, start=0, end=most + 1, **whole)
            checked(len(raw))
            return raw
        with open(path, "rb") as f:  # into a reused buffer: fresh memory costs the kernel more than the read
            size = checked(os.fstat(f.fileno()).st_size)
            if len(getattr(mine, "buffer", b"")) < size:
                mine.buffer = bytearray(size + size // 4)
            return memoryview(mine.buffer)[: f.readinto(memoryview(mine.buffer)[:size])]

    def checked(size: int) -> int:
        if size > most:
            raise ValueError(f"the chunk's object holds {size} bytes, more than twice its images")
        return size

    def read(c: int, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(shape, np.uint8) if out is None else out
        try:
            raw = fetch(dataset.path(store.chunk_path(c)))
        except FileNotFoundError:  # Zarr writes no chunk that holds only the fill value
            out[...] = fill
            return out
        decoder.decode(raw, out=out)  # into the chunk's own size: a hostile header cannot ask for more
        return out

    return read


class ChunkCache:
    """Decoded chunks kept in memory up to a byte budget: filled as chunks are first read, never
    evicted (with chunks read in a random order, keeping the first that fit serves as many reads as
    any eviction rule would, without churning memory). Thread-safe."""

    def __init__(self, budget_bytes: float):
        self.budget, self.used = budget_bytes, 0
        self.held: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def get(self, chunk: int) -> np.ndarray | None:
        """The chunk's kept samples, or None."""
        with self._lock:
            return self.held.get(chunk)

    def offer(self, chunk: int, samples: np.ndarray) -> bool:
        """Keep the chunk's samples if they fit the budget; whether they were kept."""
        with self._lock:
            if chunk in self.held or self.used + samples.nbytes > self.budget:
                return False
            self.held[chunk] = samples
            self.used += samples.nbytes
            return True

    def has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more would fit."""
        with self._lock:
            return self.used + nbytes <= self.budget


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array whose data starts on a 64-byte boundary: TensorFlow takes such
    an array from Python without copying it (an unaligned one costs a slow copy: x7 the CPU)."""
    n = int(np.prod(shape))
    raw = np.empty(n + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + n].reshape(shape)


class BatchBuffers:
    """Aligned batch arrays, each reused once TensorFlow has let go of the one handed out before.

    TensorFlow keeps the very array it was given (aligned: no copy) for as long as its tensor
    lives, so a weak reference to that array tells when the memory is free again. Reusing it
    spares the kernel zeroing fresh pages for every batch (a third of the stream's CPU otherwise).
    At most ``keep`` buffers are kept; beyond them (a consumer holding many batches) new ones are
    made and left to the garbage collector.
    """

    def __init__(self, keep: int = 8):
        self.keep = keep
        self.held: list[list] = []  # [aligned array, weak reference to the view handed out]
        self._lock = threading.Lock()  # two epochs' iterators may take at once

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A free array of ``shape`` (its content undefined)."""
        n = int(np.prod(shape))
        with self._lock:
            for entry in self.held:
                whole, handed = entry
                if handed() is None and whole.size >= n:
                    view = whole[:n].reshape(shape)
                    entry[1] = weakref.ref(view)
                    return view
            view = aligned_empty(shape)
            if len(self.held) < self.keep:
                self.held.append([view.reshape(-1), weakref.ref(view)])
            return view
