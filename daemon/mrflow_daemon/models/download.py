"""A resumable, checksummed download of one file over HTTP(S).

The file is written to `NAME.part` beside its destination, resumed with an HTTP Range request
when the connection drops (or on the next run), checked against its SHA-256, and only then
renamed into place with `os.replace` (atomic on one file system). So a complete-looking file at
the destination is always the published one, and an interrupted download costs only what was
not yet fetched.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mrflow_daemon import __version__
from mrflow_daemon.models.errors import (
    ChecksumMismatchError,
    DownloadError,
    InsufficientDiskSpaceError,
)

CHUNK_BYTES = 1 << 20
# Keep a little room on the disk after the download: a disk filled to the last byte breaks
# other programs (and Krita's autosave) in confusing ways.
DISK_MARGIN_BYTES = 64 << 20
USER_AGENT = f"mrflow/{__version__}"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def ensure_free_space(folder: Path, needed_bytes: int, *, what: str) -> None:
    """Raise InsufficientDiskSpaceError unless `folder`'s disk can take `needed_bytes` more."""
    probe = folder
    while not probe.exists():  # disk_usage needs an existing path; the folder may be new
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes + DISK_MARGIN_BYTES:
        raise InsufficientDiskSpaceError(
            f"Not enough free disk space for {what}: it needs {format_bytes(needed_bytes)} "
            f"(plus {format_bytes(DISK_MARGIN_BYTES)} to spare) in {folder}, "
            f"but only {format_bytes(free)} is free. Free some space and run the command again."
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def part_path(destination: Path) -> Path:
    return destination.with_name(destination.name + ".part")


def download_file(
    url: str,
    destination: Path,
    *,
    sha256: str,
    size_bytes: int | None = None,
    progress: bool = True,
    retries: int = 5,
    timeout_s: float = 30.0,
    retry_delay_s: float = 1.0,
) -> Path:
    """Fetch `url` to `destination`, resuming and verifying; return `destination`.

    Raises InsufficientDiskSpaceError before writing anything when the disk is too full,
    DownloadError when the server keeps failing (the partial file stays for the next try),
    ChecksumMismatchError when the bytes are not the published ones (nothing is kept).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = part_path(destination)
    have = partial.stat().st_size if partial.exists() else 0
    if size_bytes is not None and have > size_bytes:
        partial.unlink()  # longer than the real file: not a prefix of it
        have = 0
    if size_bytes is not None:
        ensure_free_space(destination.parent, size_bytes - have, what=destination.name)

    failures = 0
    while True:
        try:
            complete = _fetch_remaining(url, partial, size_bytes, progress, timeout_s)
        except InsufficientDiskSpaceError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise InsufficientDiskSpaceError(
                    f"The disk filled up while downloading {destination.name} into "
                    f"{destination.parent}. Free some space and run the command again: "
                    "it resumes where it stopped."
                ) from exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}") from exc
            failures += 1
            if failures > retries:
                raise DownloadError(
                    f"Could not download {url} after {retries + 1} tries ({exc}). "
                    "The part already fetched is kept; run the command again to resume."
                ) from exc
            time.sleep(retry_delay_s * failures)
            continue
        if complete:
            break
        failures += 1  # the connection ended early without an error: resume from where it was
        if failures > retries:
            raise DownloadError(
                f"The server kept closing the connection early while sending {url}. "
                "The part already fetched is kept; run the command again to resume."
            )

    actual = sha256_of(partial)
    if actual != sha256.lower():
        partial.unlink()
        raise ChecksumMismatchError(
            f"The downloaded {destination.name} is not the published file: its SHA-256 is "
            f"{actual}, expected {sha256.lower()}. It was deleted and nothing was installed. "
            "Try again later; if it keeps happening the download source has changed."
        )
    os.replace(partial, destination)
    return destination


def _fetch_remaining(
    url: str, partial: Path, size_bytes: int | None, progress: bool, timeout_s: float
) -> bool:
    """Append what `partial` lacks; True once the whole file is there."""
    have = partial.stat().st_size if partial.exists() else 0
    if size_bytes is not None and have == size_bytes:
        return True
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after `have`: the file was already complete
            return True
        raise
    with response:
        if have and response.status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                raise DownloadError(f"{url} answered a resume with the wrong byte range")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:  # a fresh start, or a server that ignores Range and sends everything again
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            mode = "wb"
        total = total if total is not None else size_bytes
        if size_bytes is not None and total is not None and total != size_bytes:
            raise DownloadError(
                f"{url} is {total} bytes, expected {size_bytes}: the release file has changed"
            )
        if total is not None:
            ensure_free_space(partial.parent, total - have, what=partial.name[: -len(".part")])
        with (
            partial.open(mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=partial.name[: -len(".part")],
                disable=not progress,
            ) as bar,
        ):
            while block := response.read(CHUNK_BYTES):
                out.write(block)
                have += len(block)
                bar.update(len(block))
    return total is None or have >= total
