"""Pulling a diffusers pipeline through huggingface_hub, from a small Hub served on loopback.

The server answers the three kinds of request `snapshot_download` makes (repo info, file tree,
file download), so the whole pull runs for real: size check, download, hash check, move.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import huggingface_hub.constants
import pytest
from mrflow_daemon import paths
from mrflow_daemon.models import (
    ChecksumMismatchError,
    GatedModelError,
    InsufficientDiskSpaceError,
    PipelineEntry,
    check,
    find_entry,
    installed_models,
    resolve,
)
from mrflow_daemon.models.hub import pull_pipeline, staging_dir

COMMIT = "a" * 40


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


@dataclass
class FakeHub:
    files: dict[str, bytes]
    lfs: set[str]  # which files the Hub stores in LFS (published by SHA-256)
    url: str = ""
    gated: bool = False
    corrupt: dict[str, bytes] = field(default_factory=dict)  # served instead of the real bytes
    downloads: list[str] = field(default_factory=list)

    def sibling(self, path: str) -> dict[str, object]:
        data = self.files[path]
        entry: dict[str, object] = {
            "rfilename": path,
            "size": len(data),
            "blobId": git_blob_id(data),
        }
        if path in self.lfs:
            entry["lfs"] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": 134,
            }
        return entry

    def tree_entry(self, path: str) -> dict[str, object]:
        data = self.files[path]
        entry: dict[str, object] = {
            "type": "file",
            "path": path,
            "size": len(data),
            "oid": git_blob_id(data),
        }
        if path in self.lfs:
            entry["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": 134,
            }
        return entry

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in self.lfs else git_blob_id(data)


def _handler(hub: FakeHub, repo_id: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(
            self, status: int, body: bytes, headers: dict[str, str], head: bool = False
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, data: object) -> None:
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def _route(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if hub.gated:
                message = b'{"error": "Access to model is restricted. You must have access to it."}'
                self._send(
                    401, message, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, head
                )
                return
            if path in (f"/api/models/{repo_id}", f"/api/models/{repo_id}/revision/{COMMIT}"):
                self._json(
                    {"id": repo_id, "sha": COMMIT, "siblings": [hub.sibling(p) for p in hub.files]}
                )
            elif path.startswith(f"/api/models/{repo_id}/tree/{COMMIT}"):
                self._json([hub.tree_entry(p) for p in hub.files])
            elif path.startswith(f"/{repo_id}/resolve/{COMMIT}/"):
                name = path.removeprefix(f"/{repo_id}/resolve/{COMMIT}/")
                if name not in hub.files:
                    self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
                    return
                if not head:
                    hub.downloads.append(name)
                body = hub.corrupt.get(name, hub.files[name])
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hub.etag(name)}"'}
                self._send(200, body, headers, head)
            else:
                self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"}, head)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Handler


def _pipeline(name: str) -> PipelineEntry:
    entry = find_entry(name)
    assert isinstance(entry, PipelineEntry)
    return entry


SCHNELL = _pipeline("FLUX.1-schnell")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    files = {
        "model_index.json": b'{"_class_name": "FluxPipeline"}',
        "scheduler/scheduler_config.json": b"{}",
        "transformer/config.json": b'{"num_layers": 1}',
        "transformer/diffusion_pytorch_model.safetensors": os.urandom(300_000),
        "vae/diffusion_pytorch_model.safetensors": os.urandom(50_000),
        "flux1-schnell.safetensors": os.urandom(400_000),  # the one-file checkpoint: not wanted
        "README.md": b"# FLUX.1 [schnell]\n",
    }
    state = FakeHub(files, lfs={p for p in files if p.endswith(".safetensors")})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, SCHNELL.repo_id))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_pull_installs_the_diffusers_folders_checked_and_complete(hub: FakeHub) -> None:
    folder = pull_pipeline(SCHNELL, endpoint=hub.url)
    assert folder == paths.models_dir() / "FLUX.1-schnell" == resolve("FLUX.1-schnell")
    for name in (
        "model_index.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "README.md",
    ):
        assert (folder / name).read_bytes() == hub.files[name]
    assert not (folder / "flux1-schnell.safetensors").exists()
    assert "flux1-schnell.safetensors" not in hub.downloads
    assert "transformer/diffusion_pytorch_model.safetensors" in hub.downloads  # really fetched
    assert not staging_dir(SCHNELL).exists() and not (folder / ".cache").exists()
    model = {m.name: m for m in installed_models()}["FLUX.1-schnell"]
    assert model.source.startswith("black-forest-labs/FLUX.1-schnell @ aaaaaaaaaaaa")
    assert check(model) == ("ok", [])


def test_corrupted_download_is_not_installed(hub: FakeHub) -> None:
    bad = b"\0" * len(hub.files["transformer/diffusion_pytorch_model.safetensors"])
    hub.corrupt["transformer/diffusion_pytorch_model.safetensors"] = bad
    with pytest.raises(
        ChecksumMismatchError, match=r"transformer/diffusion_pytorch_model\.safetensors"
    ):
        pull_pipeline(SCHNELL, endpoint=hub.url)
    assert not (paths.models_dir() / "FLUX.1-schnell").exists()
    assert "FLUX.1-schnell" not in {m.name for m in installed_models()}
    # Pulling again fetches only the damaged file, and installs the model.
    hub.corrupt.clear()
    fetched_before = list(hub.downloads)
    pull_pipeline(SCHNELL, endpoint=hub.url)
    assert hub.downloads[len(fetched_before) :] == [
        "transformer/diffusion_pytorch_model.safetensors"
    ]
    assert check({m.name: m for m in installed_models()}["FLUX.1-schnell"]) == ("ok", [])


def test_gated_model_explains_the_token_step(hub: FakeHub) -> None:
    hub.gated = True
    with pytest.raises(GatedModelError) as caught:
        pull_pipeline(_pipeline("FLUX.1-dev"), endpoint=hub.url)
    message = str(caught.value)
    assert "accept the licence on https://huggingface.co/black-forest-labs/FLUX.1-dev" in message
    assert "hf auth login" in message and "HF_TOKEN" in message


def test_full_disk_is_reported_before_downloading(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 40, 1 << 40, 1 << 20))
    with pytest.raises(
        InsufficientDiskSpaceError, match=r"Not enough free disk space for FLUX\.1-schnell"
    ):
        pull_pipeline(SCHNELL, endpoint=hub.url)
    assert hub.downloads == []


def test_pulling_an_intact_installed_model_fetches_nothing(hub: FakeHub) -> None:
    folder = pull_pipeline(SCHNELL, endpoint=hub.url)
    hub.downloads.clear()
    assert pull_pipeline(SCHNELL, endpoint="http://127.0.0.1:9") == folder  # no Hub needed
    assert hub.downloads == []


def test_a_second_pull_of_the_same_model_is_refused_while_one_runs() -> None:
    from filelock import FileLock
    from mrflow_daemon.models.errors import ModelStoreError
    from mrflow_daemon.models.pull import pull

    lock = paths.models_dir() / f".{SCHNELL.name}.pull.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)), pytest.raises(ModelStoreError, match="another `mrflow models pull"):
        pull(SCHNELL.name)
