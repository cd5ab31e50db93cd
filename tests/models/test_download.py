"""The resumable, verified downloader against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from mrflow_daemon.models.download import download_file, part_path
from mrflow_daemon.models.errors import (
    ChecksumMismatchError,
    DownloadError,
    InsufficientDiskSpaceError,
)

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # several chunks, not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_plain_download_lands_in_place_and_leaves_no_part(file_server, tmp_path: Path) -> None:
    file_server.files["/w.pth"] = PAYLOAD
    dest = tmp_path / "upscalers" / "w.pth"
    assert download_file(file_server.url("/w.pth"), dest, sha256=SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()


def test_resumes_with_range_after_the_connection_drops(file_server, tmp_path: Path) -> None:
    file_server.files["/w.pth"] = PAYLOAD
    file_server.cut_after["/w.pth"] = 1_000_000
    dest = tmp_path / "w.pth"
    download_file(
        file_server.url("/w.pth"),
        dest,
        sha256=SHA,
        size_bytes=len(PAYLOAD),
        progress=False,
        retry_delay_s=0,
    )
    assert dest.read_bytes() == PAYLOAD
    ranges = [rng for path, rng in file_server.requests if path == "/w.pth"]
    assert ranges[0] is None
    # The second request asks only for what is missing, starting exactly at the cut.
    assert ranges[1] == "bytes=1000000-"


def test_resumes_a_part_file_left_by_an_earlier_run(file_server, tmp_path: Path) -> None:
    file_server.files["/w.pth"] = PAYLOAD
    dest = tmp_path / "w.pth"
    part_path(dest).write_bytes(PAYLOAD[:777])
    download_file(file_server.url("/w.pth"), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert file_server.requests == [("/w.pth", "bytes=777-")]


def test_checksum_mismatch_is_rejected_and_nothing_is_left(file_server, tmp_path: Path) -> None:
    file_server.files["/w.pth"] = PAYLOAD
    dest = tmp_path / "w.pth"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumMismatchError, match=f"expected {wrong}") as caught:
        download_file(file_server.url("/w.pth"), dest, sha256=wrong, progress=False)
    assert SHA in str(caught.value)  # says what it got, too
    assert not dest.exists()
    assert not part_path(dest).exists()
    assert list(tmp_path.iterdir()) == []


def test_a_previous_good_file_is_not_replaced_by_a_bad_download(
    file_server, tmp_path: Path
) -> None:
    file_server.files["/w.pth"] = b"tampered"
    dest = tmp_path / "w.pth"
    dest.write_bytes(PAYLOAD)
    with pytest.raises(ChecksumMismatchError):
        download_file(file_server.url("/w.pth"), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_full_disk_is_reported_before_anything_is_written(
    file_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_server.files["/w.pth"] = PAYLOAD
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 5 << 20))
    dest = tmp_path / "w.pth"
    with pytest.raises(InsufficientDiskSpaceError, match=r"only 5\.0 MiB is free"):
        download_file(
            file_server.url("/w.pth"), dest, sha256=SHA, size_bytes=len(PAYLOAD), progress=False
        )
    assert file_server.requests == []
    assert not dest.exists() and not part_path(dest).exists()


def test_full_disk_is_reported_when_the_size_comes_from_the_server(
    file_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_server.files["/w.pth"] = PAYLOAD
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 1 << 20))
    dest = tmp_path / "w.pth"
    with pytest.raises(InsufficientDiskSpaceError, match="Not enough free disk space"):
        download_file(file_server.url("/w.pth"), dest, sha256=SHA, progress=False)
    assert not dest.exists()


def test_missing_file_is_a_clear_error_without_retries(file_server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(file_server.url("/nope.pth"), tmp_path / "x.pth", sha256=SHA, progress=False)
    assert len(file_server.requests) == 1


def test_gives_up_after_repeated_cuts_but_keeps_the_part(file_server, tmp_path: Path) -> None:
    file_server.files["/w.pth"] = PAYLOAD

    class AlwaysCut(dict):
        def pop(self, key, default=None):
            return 1000

    file_server.cut_after = AlwaysCut()
    dest = tmp_path / "w.pth"
    with pytest.raises(DownloadError, match="resume"):
        download_file(
            file_server.url("/w.pth"), dest, sha256=SHA, progress=False, retries=2, retry_delay_s=0
        )
    assert not dest.exists()
    assert part_path(dest).stat().st_size == 3000  # three tries, 1000 bytes each, all kept
