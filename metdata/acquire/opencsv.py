"""Reading the Open Access ``MetObjects.csv`` into schema rows, as a stream in bounded memory.

The source is a local path, an ``http(s)://`` URL or an ``s3://`` URL. Whatever it is, the bytes
pass once through ``_Stream``, which counts them, hashes them (sha256) and holds them to a size
bound, and then through pyarrow's streaming CSV reader in small blocks: memory stays flat in the
file's size (the real file is 318 MB). A file that ends without a line break, breaks off before
its announced length, or has a row of another field count is cut, and refused; so is an answer
that is not a CSV at all (an HTML page, JSON, an image, an empty body), a 404, a redirect to
anything but http(s).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import http.client
import io
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv

from metdata.acquire.csvrows import CSV_REQUIRED, csv_row
from metdata.errors import UserError

log = logging.getLogger(__name__)

#: The Open Access CSV as the museum publishes it: the raw download of ``MetObjects.csv`` of the
#: metmuseum/openaccess GitHub repository (stored with Git LFS; the copy there dates from 2023-06-17,
#: 318 MB), where ``github.com/metmuseum/openaccess/raw/master/MetObjects.csv`` redirects.
MET_OBJECTS_CSV_URL = "https://media.githubusercontent.com/media/metmuseum/openaccess/master/MetObjects.csv"
#: The size bound of a CSV source (``--csv-max-mb`` raises it).
MAX_CSV_BYTES = 2 << 30
#: Bytes per read from the source.
READ_SIZE = 1 << 20
#: Bytes per block of pyarrow's streaming CSV reader. It reads up to 32 blocks ahead on a thread
#: of its own (its background queue), so this bounds that read-ahead to ~4 MB; a row must fit in
#: a block (MetObjects.csv's longest are a few KB).
PARSE_BLOCK = 128 << 10
#: The header line must fit in this many bytes (the real one is ~700).
MAX_HEADER_BYTES = 1 << 16
#: Seconds to connect to an http(s) source, and to wait for each read.
CONNECT_TIMEOUT, READ_TIMEOUT = 30.0, 120.0
#: Redirects followed (GitHub's raw URL redirects once, to its LFS media host).
MAX_REDIRECTS = 5
#: Content types that are certainly not a CSV (the rest are checked by their header line).
_NOT_CSV = ("text/html", "application/xhtml", "application/json", "text/json", "image/", "video/", "audio/")


class CsvError(UserError):
    """The CSV cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class CsvSource:
    """What was read: the source's URL, its size in bytes and sha256, its data rows, and whether
    the source said where it ends (``size_stated``: a size, a Content-Length or chunked encoding;
    if not, a body cut at a line break reads as a whole file, and the summary says so)."""

    url: str
    bytes: int
    sha256: str
    rows: int
    size_stated: bool = True

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "rows": self.rows,
            "size_stated": self.size_stated,
        }


#: The fix, in every message about a source that is not the file.
HINT = f"give the path or the URL of MetObjects.csv (the museum's: {MET_OBJECTS_CSV_URL})"


class _Stream(io.RawIOBase):
    """A source's bytes, read once: counted, hashed, held to ``max_bytes`` and to the announced
    length, and checked to end with a line break. The header line, once read by ``header``, is not
    served again: pyarrow reads only the data rows."""

    def __init__(
        self, url: str, read: Callable[[int], bytes], max_bytes: int, length: int | None, framed: bool = False
    ) -> None:
        super().__init__()
        self.url, self._read, self.max_bytes, self.length = url, read, max_bytes, length
        #: whether the source says where it ends (a size, a Content-Length, chunked encoding): if not,
        #: a connection closed early at a line break cannot be told from the whole file
        self.end_known = length is not None or framed
        self._in_header = False
        self.count = 0
        self.sha256 = hashlib.sha256()
        self._pending = b""
        self._last = b""
        self.ended = False
        self.on_bytes: Callable[[int], None] | None = None  # progress: called with each chunk's size

    def readable(self) -> bool:
        return True

    def _pull(self, n: int) -> bytes:
        if self.ended:
            return b""
        chunk = self._read(n)
        if not chunk:
            self.ended = True
            if not self._in_header:  # the header's own checks say first what a short body is
                self._check_end()
            return b""
        self.count += len(chunk)
        if self.count > self.max_bytes:
            raise CsvError(
                f"{self.url} is larger than the bound of {self.max_bytes:,} bytes: not MetObjects.csv "
                f"(318 MB)? If it is the file, load it anyway with a higher --csv-max-mb"
            )
        self.sha256.update(chunk)
        self._last = chunk[-1:]
        if self.on_bytes is not None:
            self.on_bytes(len(chunk))
        return chunk

    def _check_end(self) -> None:
        if self.length is not None and self.count != self.length:
            raise CsvError(
                f"{self.url} broke off after {self.count:,} of its {self.length:,} bytes: the file is cut; "
                "load it again (or download it and pass its path)"
            )
        if self.count and self._last not in (b"\n", b"\r"):
            raise CsvError(
                f"{self.url} ends without a line break ({self.count:,} bytes): its last row is cut; "
                "load the whole file again (if the file is whole, end it with a line break)"
            )

    def header(self) -> list[str]:
        """The column names of the first line (BOM, CR and spaces around names removed).

        Raises:
            CsvError: empty, not UTF-8 text, no line break within ``MAX_HEADER_BYTES``, a name twice,
                or not MetObjects.csv's columns.
        """
        data = b""
        self._in_header = True
        try:
            while b"\n" not in data and len(data) <= MAX_HEADER_BYTES:
                chunk = self._pull(READ_SIZE)
                if not chunk:
                    break
                data += chunk
        finally:
            self._in_header = False
        if not data:
            raise CsvError(f"{self.url} is empty: not MetObjects.csv; {HINT}")
        end = data.find(b"\n")
        if end < 0:
            what = "one line with no rows" if self.ended else f"no line break in its first {len(data):,} bytes"
            raise CsvError(f"{self.url} is not a CSV ({what}): not MetObjects.csv; {HINT}")
        line, self._pending = data[: end + 1], data[end + 1 :]
        try:
            text = codecs.decode(line, "utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CsvError(f"{self.url} is not UTF-8 text ({exc.reason}): not MetObjects.csv; {HINT}") from exc
        if text.startswith("version https://git-lfs"):  # raw.githubusercontent.com serves LFS files so
            raise CsvError(f"{self.url} is a Git LFS pointer, not the file itself; {HINT}")
        names = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")]), [])]
        twice = sorted({n for n in names if names.count(n) > 1})
        missing = [c for c in CSV_REQUIRED if c not in names]
        if missing:
            head = text[:80].strip()
            raise CsvError(
                f"{self.url} is not MetObjects.csv: missing columns {', '.join(missing)} "
                f"(its first line starts {head!r}); {HINT}"
            )
        if twice:
            raise CsvError(f"{self.url} is not MetObjects.csv: columns named twice ({', '.join(twice)})")
        if self.ended:  # the whole body was read with the header: its end is checked now
            self._check_end()
        return names

    def at_end(self) -> bool:
        """Whether nothing follows what was served (reads a block ahead to know)."""
        if not self._pending:
            self._pending = self._pull(READ_SIZE)
        return not self._pending

    def drain(self) -> None:
        """Read to the end (hashing, counting and checking it) without serving the bytes."""
        while self._pull(READ_SIZE):
            pass

    def readinto(self, buffer) -> int:
        data = self._pending or self._pull(min(len(buffer), READ_SIZE))
        n = min(len(buffer), len(data))
        buffer[:n], self._pending = data[:n], data[n:]
        return n


def _refuse_content_type(url: str, content_type: str) -> None:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind.startswith(_NOT_CSV):
        raise CsvError(f"{url} answered {kind}, not a CSV (a web page rather than the file's raw download?): {HINT}")


@contextmanager
def _http(url: str, max_bytes: int) -> Iterator[_Stream]:
    """Stream an http(s) URL: redirects by hand, only to http(s); the length checked against the bound."""
    import requests
    import urllib3

    from metdata.net.session import new_session, proxies_for

    with ExitStack() as stack:
        session = stack.enter_context(new_session(1))
        session.headers["Accept-Encoding"] = "identity"  # the file's own bytes: their length and hash
        start = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = stack.enter_context(
                    session.get(
                        url,
                        stream=True,
                        allow_redirects=False,
                        timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                        proxies=proxies_for(url),
                    )
                )
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                raise CsvError(
                    f"cannot reach {url} ({type(exc).__name__}: {str(exc)[:200]}): check the URL and the network, "
                    "or download the file and pass its path"
                ) from exc
            if not response.is_redirect:
                break
            target = urljoin(url, response.headers.get("Location", ""))
            scheme, host = _split(target)
            if scheme not in ("http", "https") or not host:
                raise CsvError(
                    f"{url} redirects to {target[:200]!r}: only http(s) redirects are followed; "
                    "give the file's final URL or download it and pass its path"
                )
            url = target
        else:
            raise CsvError(f"{start} redirects more than {MAX_REDIRECTS} times; give the file's final URL")
        if response.status_code == 404:
            raise CsvError(f"{url} answered HTTP 404 (no such file): check the URL; {HINT}")
        if response.status_code != 200:
            raise CsvError(
                f"{url} answered HTTP {response.status_code}, not the file: try again later, or download it "
                "and pass its path"
            )
        _refuse_content_type(url, response.headers.get("Content-Type", ""))
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise CsvError(f"{url} answered with Content-Encoding {encoding!r}; download the file and pass its path")
        length_header = response.headers.get("Content-Length", "").strip()
        length = int(length_header) if re.fullmatch(r"[0-9]{1,15}", length_header) else None
        _check_size(url, length, max_bytes)
        raw = response.raw

        def read(n: int) -> bytes:
            try:
                return raw.read(n, decode_content=False)
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                raise CsvError(
                    f"the download of {url} broke off ({type(exc).__name__}: {str(exc)[:200]}): the file is cut; "
                    "load it again (or download it and pass its path)"
                ) from exc

        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        if length is None and not chunked:
            log.warning(
                "%s states neither its length nor chunked encoding: a connection closed early at a line break "
                "cannot be told from the whole file; check the rows loaded (or download it and pass its path)",
                url,
            )
        yield _Stream(start, read, max_bytes, length, framed=chunked)


def _check_size(url: str, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise CsvError(
            f"{url} has {size:,} bytes, more than the bound of {max_bytes:,} bytes: not MetObjects.csv (318 MB)? "
            "If it is the file, load it anyway with a higher --csv-max-mb"
        )


@contextmanager
def _fsspec(url: str, storage_options: dict, max_bytes: int) -> Iterator[_Stream]:
    """Stream an s3:// URL or a local file: a read-ahead cache of one block, never the whole file."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
        info = fs.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(path)
        _check_size(url, info.get("size"), max_bytes)
        handle = fs.open(path, "rb", block_size=4 * READ_SIZE, cache_type="readahead")
    except FileNotFoundError as exc:
        raise CsvError(f"no such file: {url}; {HINT}") from exc
    except IsADirectoryError as exc:
        raise CsvError(f"{url} is a folder, not a file; {HINT}") from exc
    except (OSError, ValueError, TypeError, ImportError) as exc:  # s3fs: permissions, bad options, no bucket
        raise CsvError(
            f"cannot open {url} ({type(exc).__name__}: {str(exc)[:200]}); check the URL and --csv-storage-options"
        ) from exc
    size = info.get("size")

    def read(n: int) -> bytes:
        try:
            return handle.read(n)
        except OSError as exc:
            raise CsvError(f"reading {url} failed ({type(exc).__name__}: {str(exc)[:200]}); load it again") from exc

    with handle:
        yield _Stream(url, read, max_bytes, size if isinstance(size, int) else None)


def _split(url: str) -> tuple[str, str | None]:
    """(scheme, host) of a URL; a URL ``urlsplit`` cannot read (``http://[::1``) is a CsvError."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), parts.hostname
    except ValueError as exc:
        raise CsvError(f"{url[:200]!r} is not a URL ({exc}): give a local path, an http(s):// or an s3:// URL") from exc


def _open(url: str, storage_options: dict, max_bytes: int):
    scheme = _split(url)[0] if "://" in url else ""
    if scheme in ("http", "https"):
        return _http(url, max_bytes)
    if scheme in ("", "file", "s3"):
        return _fsspec(url, storage_options, max_bytes)
    raise CsvError(f"{url!r}: --from-csv reads a local path, an http(s):// or an s3:// URL, not {scheme}://")


class CsvReader:
    """One pass over a MetObjects.csv: ``batches()`` yields schema rows; ``source`` is known once
    they are all read (size, sha256 and rows of the whole file)."""

    def __init__(self, stream: _Stream, batch_rows: int) -> None:
        self._stream, self._batch_rows = stream, batch_rows
        self.source: CsvSource | None = None

    @property
    def size(self) -> int | None:
        """The source's size in bytes if it announced one (a file, an object, a Content-Length)."""
        return self._stream.length

    def report_bytes(self, callback: Callable[[int], None]) -> None:
        """Call ``callback`` with the size of every chunk read (a progress bar's ``update``)."""
        self._stream.on_bytes = callback

    def batches(self) -> Iterator[list[dict]]:
        """Schema rows (status ``csv``), a batch at a time; every column is read as text (ids like
        "1979.486.1" must stay strings) and mapped by ``csvrows.csv_row``.

        Raises:
            CsvError: not MetObjects.csv, or cut (a row of another field count, a missing end).
        """
        stream = self._stream
        names = stream.header()
        if stream.at_end():  # pyarrow calls a file with no rows "empty": say what it is
            raise CsvError(f"{stream.url} has a header but no rows: not MetObjects.csv; {HINT}")
        rows = 0
        convert = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False)
        read_options = pacsv.ReadOptions(column_names=names, block_size=PARSE_BLOCK, use_threads=False)
        parse = pacsv.ParseOptions(newlines_in_values=True)
        try:
            reader = pacsv.open_csv(stream, read_options=read_options, parse_options=parse, convert_options=convert)
            for batch in reader:
                rows += batch.num_rows
                mapped = [csv_row(r) for r in batch.to_pylist()]
                for i in range(0, len(mapped), self._batch_rows):
                    yield mapped[i : i + self._batch_rows]
        except pa.ArrowInvalid as exc:
            problem = str(exc).splitlines()[0][:300]
            if "straddl" in problem:  # pyarrow's words for a row longer than a block
                problem = f"a row longer than {PARSE_BLOCK // 1024} KB, or a quote never closed"
            raise CsvError(
                f"{stream.url} is not a whole MetObjects.csv ({problem}): a cut or damaged file; "
                "load it again (or download it and pass its path)"
            ) from exc
        stream.drain()  # pyarrow stops at the end it sees: the stream checks its own
        if rows == 0:  # blank lines only
            raise CsvError(f"{stream.url} has a header but no rows: not MetObjects.csv; {HINT}")
        self.source = CsvSource(stream.url, stream.count, stream.sha256.hexdigest(), rows, stream.end_known)


@contextmanager
def open_csv(
    url: str, storage_options: dict | None = None, max_bytes: int = MAX_CSV_BYTES, batch_rows: int = 5_000
) -> Iterator[CsvReader]:
    """Open a MetObjects.csv (local path, ``http(s)://`` or ``s3://`` URL) for one streaming pass.

    Args:
        url: where the file is; http(s) redirects are followed only to http(s).
        storage_options: fsspec options for ``s3://`` (e.g. ``{"endpoint_url": ...}``).
        max_bytes: refuse a source larger than this (announced or read).
        batch_rows: rows per batch at most.

    Raises:
        CsvError: a missing file, an unreachable URL, an HTTP error, a source over the bound or
            that is not a CSV; while reading (``batches``), a cut or damaged file.
    """
    with _open(url, dict(storage_options or {}), max_bytes) as stream:
        yield CsvReader(stream, batch_rows)
