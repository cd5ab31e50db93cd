"""What can go wrong while fetching or checking a model, each with a message that says what to do.

`ModelNotFoundError` (a model that is not installed) is the engine's, in
mrflow_daemon.engine.errors, so the daemon reports it like any other engine error.
"""

from __future__ import annotations


class ModelStoreError(Exception):
    """Base class: a download, check or removal could not be done; nothing half-done is left."""


class DownloadError(ModelStoreError):
    """The file could not be fetched (network, server). A partial download is kept for resuming."""


class ChecksumMismatchError(ModelStoreError):
    """The downloaded bytes are not the published file; they were deleted."""


class InsufficientDiskSpaceError(ModelStoreError):
    """Not enough free disk for the download; nothing was written."""


class GatedModelError(ModelStoreError):
    """The model needs a Hugging Face account, an accepted licence and a token."""


class UnknownModelError(ModelStoreError, KeyError):
    """A name that is neither in the catalog nor installed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
