"""Image bytes to a square RGB array: sniff, guard, decode (reduced when it can), resize.

Pure: NumPy and OpenCV only, no I/O. Grayscale, PNG, CMYK and 16-bit inputs all come out
8-bit RGB. OpenCV's own pixel cap is set before it is imported, and the header is checked
first, so a decompression bomb is a ``TooLarge`` error, not a dead worker.
"""

from __future__ import annotations

import os
import struct
import threading

#: Decoded pixels allowed per image (OpenCV refuses more; the header check comes first).
MAX_PIXELS = 100_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402 - the pixel cap must be in the environment before OpenCV loads
import numpy as np  # noqa: E402

# One image per call on one thread: the callers run many at once (a thread per download), so OpenCV's own
# pool would only add threads that spin (sched_yield) waiting for the next tiny resize: measured, 60 yields
# per image of the images stage and ~0.3 ms of CPU per image more.
cv2.setNumThreads(1)

RESIZE_MODES = ("squash", "pad", "crop")
_REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}


class BadImage(ValueError):
    """The bytes are not a decodable image (truncated, corrupt, HTML, ...)."""


class TooLarge(ValueError):
    """The image has more pixels than allowed."""


#: a JPEG's frame and scan headers must start within this many bytes (libjpeg would read on; we do not)
HEADER_LIMIT = 2 << 20


def sniff(data: bytes) -> tuple[str, int, int] | None:
    """Return (format, width, height) from a JPEG or PNG header, or None if neither.

    A JPEG's frame header (SOF) must be within its first ``HEADER_LIMIT`` bytes; the scan for it
    costs milliseconds whatever the bytes (``bytes.find``, not a Python loop over each byte).

    >>> size = (640).to_bytes(4, "big") + (480).to_bytes(4, "big")
    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00\\x00\\x00\\rIHDR" + size
    >>> sniff(png)
    ('png', 640, 480)
    >>> sniff(b"<html>not an image</html>") is None
    True
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] != b"\xff\xd8":
        return None
    for marker, at in _segments(data):
        if _is_frame(marker):
            if at + 7 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 3 : at + 7])  # after the length and the precision
            return "jpeg", width, height
    return None


def _is_frame(marker: int) -> bool:
    """Whether a JPEG marker starts a frame header (SOF0-SOF15 but DHT, JPG and DAC)."""
    return 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)


#: Within ``decode``: the segments of the bytes it decodes, walked once (``decode`` reads them four times).
_walked = threading.local()


def _segments(data: bytes) -> list[tuple[int, int]]:
    """``_walk``'s segments of ``data``; inside ``decode``, walked once for the bytes it decodes."""
    if getattr(_walked, "data", None) is data:
        return _walked.segments
    segments = list(_walk(data))
    if getattr(_walked, "keep", False):
        _walked.data, _walked.segments = data, segments
    return segments


def _walk(data: bytes):
    """Yield (marker, offset of its length field) for each segment of a JPEG's header, up to and
    including its first SOS, within ``HEADER_LIMIT`` bytes.

    As libjpeg reads markers: bytes that are not a marker between two segments are skipped, so
    are fill bytes (0xFF runs) and a stuffed zero (FF 00). Every step is ``bytes.find`` or a
    bounded ``lstrip``: linear in the bytes, at C speed.
    """
    end = min(len(data), HEADER_LIMIT)
    i = 2
    while True:
        j = data.find(b"\xff", i, end)
        if j < 0:
            return
        k = j + 1
        while k < end:  # fill bytes, a window at a time (a slice of the rest each time would be quadratic)
            window = data[k : min(k + 4096, end)]
            rest = window.lstrip(b"\xff")
            k += len(window) - len(rest)
            if rest:
                break
        if k >= end:
            return
        marker = data[k]
        if marker == 0x00 or marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length: not a segment
            i = k + 1
            continue
        if k + 3 > len(data):
            return
        yield marker, k + 1
        if marker == 0xDA:
            return
        i = k + 1 + struct.unpack(">H", data[k + 1 : k + 3])[0]


def truncated(data: bytes, fmt: str) -> bool:
    """Whether a JPEG or PNG ends before its end, judged from its bytes: a PNG with no IEND chunk; a
    JPEG with no EOI marker after its scan, or whose compressed scan is shorter than its declared
    size needs at the least (``scan_too_short``: a cut file with an EOI appended).

    A cut file decodes (OpenCV fills the missing blocks with grey), so the decoder alone cannot be
    the judge; ``decode`` adds the one check that needs the pixels (``_cut_after_decode``). This is
    the one rule the images stage (``bad_image``) and ``metdata serve`` (400) share.

    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00\\x00\\x00\\rIHDR" + bytes(17)
    >>> truncated(png, "png"), truncated(png + b"\\x00\\x00\\x00\\x00IEND\\xaeB`\\x82", "png")
    (True, False)
    """
    if fmt == "png":
        return _png_cut(data)
    scan = _scan_start(data)
    return scan < 0 or data.find(b"\xff\xd9", scan) < 0 or scan_too_short(data)  # 0xFF in a scan is FF 00


def _png_cut(data: bytes, most: int = 10_000) -> bool:
    """Whether a PNG's chunks, walked by their lengths, run past its end before IEND (a cut file, with
    or without an IEND appended: libpng would only fail, loudly, on stderr). After ``most`` chunks
    the walk stops and an IEND chunk with its CRC at the end is enough."""
    at = 8
    for _ in range(most):
        if at + 12 > len(data):
            return True
        length = struct.unpack(">I", data[at : at + 4])[0]
        if data[at + 4 : at + 8] == b"IEND":
            return False
        at += 12 + length
    end = data.rfind(b"IEND", 33)
    return end < 0 or len(data) < end + 8  # the chunk type, then its CRC


def scan_too_short(data: bytes) -> bool:
    """Whether a Huffman-coded JPEG's compressed data (SOS to EOI) is shorter than its frame needs.

    Every 8x8 block costs at least one Huffman code of at least one bit in a progressive file's
    first scan, and two (its DC difference and an end of block) in a sequential one; the block
    count is read from the frame header (the smallest count for the components' sampling). A
    6000x6000 JPEG needs ~100 KB at the very least; 1,200 bytes of it with an EOI appended are a
    cut file. Arithmetic-coded, lossless and hierarchical files are not judged here.
    """
    frame = _frame(data)
    scan = _scan_start(data)
    end = data.find(b"\xff\xd9", max(scan, 0))
    if frame is None or scan < 0 or end < 0:
        return False
    marker, width, height, sampling = frame
    bits = {0xC0: 2, 0xC1: 2, 0xC2: 1}.get(marker)
    if bits is None or not sampling:
        return False
    hmax, vmax = max(h for h, _ in sampling) or 1, max(v for _, v in sampling) or 1
    blocks = sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8) for h, v in sampling)
    return (end - scan) * 8 < blocks * bits


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _frame(data: bytes) -> tuple[int, int, int, list[tuple[int, int]]] | None:
    """A JPEG's frame header: (SOF marker, width, height, [(h, v) sampling of each component]), or None."""
    for marker, at in _segments(data):
        if _is_frame(marker):
            count = data[at + 7] if at + 8 <= len(data) else 0
            if at + 8 + 3 * count > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 3 : at + 7])
            sampling = [(data[at + 9 + 3 * c] >> 4, data[at + 9 + 3 * c] & 15) for c in range(count)]
            return marker, width, height, sampling
    return None


#: bytes put before a suspect JPEG's EOI to see whether its decoder had run out of data: zero bits are
#: always valid Huffman codes (a canonical table's first code is all zeros), and continue the DC prediction
_PROBE = bytes(4096)


def _cut_after_decode(data: bytes, pixels: np.ndarray, flag: int) -> bool:
    """Whether a decoded JPEG's last block is libjpeg's fill for missing data, and the data was cut.

    libjpeg-turbo decodes the blocks after the end of a cut scan as all-zero coefficients: exactly
    grey 128. A bottom-right block of exact 128 is suspect (rare in a photograph, possible in a
    flat border); the file is then decoded again with zero bytes put before its EOI: a whole scan
    ignores them (libjpeg skips bytes after the scan) and decodes the same, a cut one decodes them
    into the missing blocks, which then differ.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        return False
    side = max(1, 8 * pixels.shape[0] // max(1, (sniff(data) or ("", 0, pixels.shape[0]))[2]))
    if not (pixels[-side:, -side:] == 128).all():
        return False
    scan = _scan_start(data)
    end = data.find(b"\xff\xd9", max(scan, 0))
    if scan < 0 or end < 0:
        return False
    probed = cv2.imdecode(np.frombuffer(data[:end] + _PROBE + data[end:], np.uint8), flag)
    return probed is None or probed.shape != pixels.shape or not np.array_equal(probed, pixels)


def _without_junk(data: bytes) -> bytes:
    """A JPEG with the bytes between its header segments dropped (junk or fill), as libjpeg skips
    them, but without its warning on stderr; the same bytes when there are none."""
    parts, expected, gaps = [b"\xff\xd8"], 2, False
    for marker, at in _segments(data):
        start = at - 2
        gaps = gaps or start != expected
        if marker == 0xDA:
            return b"".join([*parts, data[start:]]) if gaps else data
        expected = at + struct.unpack(">H", data[at : at + 2])[0]
        parts.append(data[start:expected])
    return data


def _scan_start(data: bytes) -> int:
    """The offset of a JPEG's first SOS segment's data (where the compressed scan starts), or -1."""
    for marker, at in _segments(data):
        if marker == 0xDA:
            return at + struct.unpack(">H", data[at : at + 2])[0]
    return -1


def reduction(width: int, height: int, target: int, longer: bool = False) -> int:
    """The JPEG decoding scale (1, 2, 4 or 8) that keeps the shorter side at least ``target``
    (``longer``: the longer side, when ``target`` bounds only that one, as ``resize``'s ``pad`` does).

    The decoded image stays at least what the resize after it needs, so that resize only shrinks.

    >>> reduction(800, 600, 150), reduction(800, 600, 64), reduction(800, 600, 0), reduction(800, 600, 150, True)
    (4, 8, 1, 4)
    >>> reduction(771, 595, 150), reduction(771, 595, 150, longer=True)
    (2, 4)
    """
    side = max(width, height) if longer else min(width, height)
    return next((k for k in _REDUCED if target and side // k >= target), 1)


def decode(data: bytes, target: int = 0, longer: bool = False) -> tuple[np.ndarray, int, int]:
    """Decode image bytes to an 8-bit RGB array; return it with the original width and height.

    When ``target`` (the side the image will be resized to) is much smaller than a JPEG,
    OpenCV decodes it at 1/2, 1/4 or 1/8 scale directly, which is several times faster; with
    ``longer`` (``resize``'s ``pad``, which fits the longer side to ``target``) only the longer side
    must stay at least ``target``, so more images decode smaller (and resize faster: ~0.15 ms of
    ~1 ms per web-large image).

    Raises:
        TooLarge: more than ``MAX_PIXELS`` pixels.
        BadImage: not decodable.
    """
    _walked.keep = True
    try:
        return _decode(data, target, longer)
    finally:  # the bytes are not kept past the call
        _walked.keep, _walked.data, _walked.segments = False, None, None


def _decode(data: bytes, target: int, longer: bool) -> tuple[np.ndarray, int, int]:
    header = sniff(data)
    if header is None and data[:2] == b"\xff\xd8":
        raise BadImage(f"no JPEG frame header (SOF) within the first {HEADER_LIMIT >> 20} MB: corrupt or not a JPEG")
    if header is not None and header[1] * header[2] > MAX_PIXELS:
        raise TooLarge(f"{header[1]}x{header[2]} pixels is over the {MAX_PIXELS:,} pixel cap")
    if header is not None and header[0] == "jpeg" and _scan_start(data) < 0 and len(data) > HEADER_LIMIT:
        raise BadImage(f"no JPEG scan (SOS) within the first {HEADER_LIMIT >> 20} MB: corrupt or padded header")
    if header is not None and truncated(data, header[0]):
        raise BadImage(f"the {header[0].upper()} ends before its end ({len(data):,} bytes: a cut or partial file)")
    if header is not None and header[0] == "jpeg":
        data = _without_junk(data)
    flag = cv2.IMREAD_COLOR  # any depth or channel count in, 8-bit BGR out
    if header is not None and header[0] == "jpeg":
        flag = _REDUCED.get(reduction(header[1], header[2], target, longer), flag)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error as exc:
        raise TooLarge(str(exc)) if "pixels" in str(exc).lower() else BadImage(str(exc)) from exc
    if pixels is None:
        kind = "truncated or corrupt JPEG/PNG" if header else "not an image"
        raise BadImage(f"OpenCV could not decode {len(data)} bytes ({kind}, starts {data[:12]!r})")
    if header is not None and header[0] == "jpeg" and _cut_after_decode(data, pixels, flag):
        raise BadImage(f"the JPEG ends before its end: its scan stops short of the {header[1]}x{header[2]} image")
    if header is not None and flag == cv2.IMREAD_COLOR and (pixels.shape[1], pixels.shape[0]) != header[1:]:
        raise BadImage("decoded size differs from the header")
    width, height = header[1:] if header else (pixels.shape[1], pixels.shape[0])
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), width, height


def resize(rgb: np.ndarray, size: int, mode: str = "squash") -> np.ndarray:
    """Resize an RGB array to ``size`` x ``size``.

    Modes: ``squash`` stretches to the square (the blog's behaviour); ``pad`` keeps the
    aspect ratio and fills the border with black; ``crop`` fills the square and takes the
    centre.

    >>> resize(np.zeros((30, 60, 3), np.uint8), 10, "pad").shape
    (10, 10, 3)

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose from {', '.join(RESIZE_MODES)}")
    height, width = rgb.shape[:2]
    if mode == "squash":
        return _scale(rgb, size, size)
    scale = (min if mode == "pad" else max)(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    scaled = _scale(rgb, new_w, new_h)
    if mode == "crop":
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return np.ascontiguousarray(scaled[top : top + size, left : left + size])
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = scaled
    return out


def _scale(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    # INTER_AREA for shrinking (no aliasing), cubic when an image is enlarged
    shrinking = width * height <= rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
