"""Errors the engine raises for bad input or missing models.

Each carries the request field it is about (when there is one), so the
daemon can answer with an error naming the field, and the message says what
was wrong and what is allowed.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a generation could not run; nothing was changed."""

    code = "engine_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequestError(EngineError, ValueError):
    code = "invalid_request"


class ModelNotFoundError(EngineError, FileNotFoundError):
    code = "model_not_found"


class UnsupportedModelError(EngineError):
    code = "unsupported_model"


class OutOfMemoryError(EngineError):
    """The device ran out of memory; memory was freed and the engine can go on."""

    code = "out_of_memory"
