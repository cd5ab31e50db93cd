"""What a complete installed pipeline folder holds, so `mrflow models verify` can check it offline.

A pulled pipeline gets a `mrflow-manifest.json` listing every file with its size and the hash the
Hugging Face Hub publishes for it: the SHA-256 for large (LFS) files, the Git blob id (a SHA-1 of
"blob SIZE\\0" + content) for small ones. The manifest is written only after every file was
checked, and its presence is what marks the folder as complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mrflow_daemon.models.download import CHUNK_BYTES

MANIFEST_NAME = "mrflow-manifest.json"


@dataclass(frozen=True)
class ExpectedFile:
    path: str  # relative, with forward slashes
    size: int
    sha256: str | None = None  # LFS files
    git_sha1: str | None = None  # small files stored in Git


@dataclass(frozen=True)
class Manifest:
    source: str  # e.g. "black-forest-labs/FLUX.1-schnell"
    revision: str
    files: tuple[ExpectedFile, ...]

    def write(self, folder: Path) -> None:
        data = {"source": self.source, "revision": self.revision}
        data["files"] = [asdict(f) for f in self.files]  # type: ignore[assignment]
        (folder / MANIFEST_NAME).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        try:
            data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
            files = tuple(ExpectedFile(**item) for item in data["files"])
            return cls(source=data["source"], revision=data["revision"], files=files)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the folder
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def problems_in(folder: Path, manifest: Manifest) -> list[Problem]:
    """Every file in `folder` that differs from `manifest` (empty when it is intact)."""
    from mrflow_daemon.models.download import sha256_of

    problems = []
    for expected in manifest.files:
        path = folder / expected.path
        if not path.is_file():
            problems.append(Problem(expected.path, "missing"))
            continue
        size = path.stat().st_size
        if size != expected.size:
            problems.append(Problem(expected.path, f"{size} bytes, expected {expected.size}"))
        elif expected.sha256 and sha256_of(path) != expected.sha256:
            problems.append(Problem(expected.path, "SHA-256 differs from the published file"))
        elif expected.git_sha1 and git_blob_sha1(path) != expected.git_sha1:
            problems.append(Problem(expected.path, "content differs from the published file"))
    return problems
