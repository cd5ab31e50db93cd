"""Pulling a diffusers pipeline from the Hugging Face Hub into the models folder.

`huggingface_hub.snapshot_download` does the transfer (parallel, resumable, with its own progress
bars). Around it we add what the product promises: a free-disk check against the exact size
first, a clear explanation when the model is gated, only the diffusers component folders (the
repos also carry one-file checkpoints of the same weights, another 20+ GB), every file checked
against the Hub's published hashes, and the folder moved into place only when it is complete.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from mrflow_daemon import paths
from mrflow_daemon.models.catalog import PipelineEntry
from mrflow_daemon.models.download import ensure_free_space
from mrflow_daemon.models.errors import (
    ChecksumMismatchError,
    DownloadError,
    GatedModelError,
    ModelStoreError,
)
from mrflow_daemon.models.manifest import ExpectedFile, Manifest, problems_in

# model_index.json plus the component folders (transformer/, vae/, text_encoder/, ...). Root
# files other than these are the single-file checkpoints diffusers does not need.
PIPELINE_PATTERNS = ("model_index.json", "*/*", "LICENSE*", "README.md")


def wanted(filename: str) -> bool:
    return any(fnmatch.fnmatch(filename, pattern) for pattern in PIPELINE_PATTERNS)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def pipeline_dir(entry: PipelineEntry) -> Path:
    return paths.models_dir() / entry.name


def staging_dir(entry: PipelineEntry) -> Path:
    return paths.models_dir() / f"{entry.name}.part"


def pull_pipeline(
    entry: PipelineEntry, *, token: str | None = None, endpoint: str | None = None
) -> Path:
    """Download `entry` into the models folder; return the installed folder.

    `endpoint`: another Hub (a mirror; the tests' local server); default HF_ENDPOINT or the Hub.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    installed = pipeline_dir(entry)
    recorded = Manifest.read(installed)
    if recorded is not None and not problems_in(installed, recorded):
        return installed  # intact (sizes and hashes): nothing to fetch, offline too

    api = HfApi(token=token, endpoint=endpoint)
    try:
        info = api.model_info(entry.repo_id, files_metadata=True)
        files = [s for s in (info.siblings or []) if wanted(s.rfilename)]
        manifest = Manifest(
            source=entry.repo_id,
            revision=info.sha or "main",
            files=tuple(
                ExpectedFile(
                    path=s.rfilename,
                    size=(s.lfs.size if s.lfs else s.size) or 0,
                    sha256=s.lfs.sha256 if s.lfs else None,
                    git_sha1=None if s.lfs else s.blob_id,
                )
                for s in files
            ),
        )
        staging = staging_dir(entry)
        already = sum(
            (staging / f.path).stat().st_size
            for f in manifest.files
            if (staging / f.path).is_file()
        )
        ensure_free_space(
            paths.models_dir(),
            manifest.total_bytes - already,
            what=f"{entry.name} ({entry.repo_id})",
        )
        snapshot_download(
            entry.repo_id,
            revision=manifest.revision,
            local_dir=staging,
            allow_patterns=list(PIPELINE_PATTERNS),
            token=token,
            endpoint=endpoint,
        )
    except GatedRepoError as exc:
        raise GatedModelError(entry.token_help()) from exc
    except RepositoryNotFoundError as exc:
        # The Hub answers "not found" to anonymous requests for some gated repos too.
        hint = entry.token_help() if entry.gated else f"Check {entry.page_url} is reachable."
        raise DownloadError(f"{entry.repo_id} was not found on the Hub. {hint}") from exc
    except (ModelStoreError, KeyboardInterrupt):
        raise
    except Exception as exc:  # network and HTTP errors come from several libraries
        offline = " (HF_HUB_OFFLINE is set: unset it to download)" if _offline() else ""
        kept = (
            f"What was fetched is kept in {staging_dir(entry)}; run "
            f"`mrflow models pull {entry.name}` again to resume."
            if staging_dir(entry).exists()
            else f"Nothing was written; run `mrflow models pull {entry.name}` to try again."
        )
        raise DownloadError(
            f"Downloading {entry.name} from {entry.page_url} failed{offline}: {exc}\n{kept}"
        ) from exc
    return install_staged(entry, manifest)


def install_staged(entry: PipelineEntry, manifest: Manifest) -> Path:
    """Check the staged folder against `manifest` and move it into place (replacing an old one)."""
    staging = staging_dir(entry)
    problems = problems_in(staging, manifest)
    if problems:
        # Delete the bad files (and huggingface_hub's note that they were fetched), so the
        # next pull fetches exactly those again and keeps the rest.
        for problem in problems:
            (staging / problem.path).unlink(missing_ok=True)
            note = staging / ".cache" / "huggingface" / "download" / f"{problem.path}.metadata"
            note.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{entry.name} did not download intact and was not installed:\n  "
            + "\n  ".join(map(str, problems[:10]))
            + f"\nRun `mrflow models pull {entry.name}` again to fetch the damaged files."
        )
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's resume bookkeeping
    manifest.write(staging)
    final = pipeline_dir(entry)
    if final.exists():  # an upgrade: swap, then delete the old copy
        old = final.with_name(f"{entry.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final
