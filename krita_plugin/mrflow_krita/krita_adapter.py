"""The only module that touches Krita's `krita` module.

Everything Krita-specific is here: which document is active, reading the merged canvas and
the selection, and the preview layer's life (create locked, paint, turn into a normal
layer, remove). Facts this relies on, checked in Krita 5.1.5:

- `Document.pixelData` reads the merged image; `Node.pixelData` is BGRA for RGBA/U8.
- Adding a node with `addChildNode` is one undo step; writing pixels into a node that is
  not in the image yet is part of that step. So a result is applied by painting a layer
  and adding it in one go, and Ctrl+Z removes it.
- Adding a node makes it the active layer, in a background stroke: after `waitForDone()`
  the user's active layer is restored for previews, so the artist keeps painting there.
  Until that stroke is done the new node is not in `topLevelNodes()` either.
- `Selection.feather` is Krita's own Gaussian feather; it grows the selection's bounds, and it
  treats everything past the canvas as unselected (Select All feathered by 8 keeps 136 of 255 at
  the canvas edge). `Selection.setPixelData` also writes past the canvas (negative coordinates).
- Node uuids do not identify a document: *Create Copy From Current Image* (`Document.clone`)
  copies every uuid, the root's too. Two `Document` wrappers compare equal (`==`) when they
  wrap the same document, and a copy does not equal its original: the plugin keys documents
  by that, in a registry of the documents it has met (`_document_key`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from krita import (  # type: ignore[import-not-found]
    DockWidget,
    DockWidgetFactory,
    DockWidgetFactoryBase,
    Extension,
    Krita,
    Selection,
)

from mrflow_krita.geometry import Rect
from mrflow_krita.qt import QtCore

SUPPORTED_MODEL = "RGBA"
SUPPORTED_DEPTH = "U8"


class UnsupportedDocument(Exception):
    """The document's colour model or depth is one the plugin cannot paint into yet."""


def _bytes(data: Any) -> bytes:
    return bytes(data)  # QByteArray (or bytes in the test double) -> bytes


@dataclass
class DocumentAdapter:
    document: Any

    @property
    def key(self) -> str:
        return _document_key(self.document)

    @property
    def name(self) -> str:
        return str(self.document.name() or self.document.fileName() or "Untitled")

    @property
    def supported(self) -> bool:
        """Whether the plugin can paint into this document (RGBA 8-bit)."""
        return (self.document.colorModel(), self.document.colorDepth()) == (
            SUPPORTED_MODEL,
            SUPPORTED_DEPTH,
        )

    def check_supported(self) -> None:
        if not self.supported:
            model, depth = self.document.colorModel(), self.document.colorDepth()
            raise UnsupportedDocument(
                f"This document is {model} {depth}; MrFlow paints into RGBA 8-bit documents only. "
                "Convert it with Image > Convert Image Color Space (RGB/Alpha, 8-bit integer/channel), "
                "or work on an RGBA 8-bit copy."
            )

    def bounds(self) -> Rect:
        return Rect(0, 0, int(self.document.width()), int(self.document.height()))

    def selection_bounds(self) -> Rect | None:
        selection = self.document.selection()
        if selection is None:
            return None
        rect = Rect(selection.x(), selection.y(), selection.width(), selection.height())
        rect = rect.intersect(self.bounds())
        return None if rect.is_empty else rect

    def read_canvas(self, rect: Rect, hide: Iterable[str] = ()) -> bytes:
        """The merged image (all visible layers) in `rect`, as BGRA, leaving out the nodes
        whose ids are in `hide` (the plugin's own previews: never an input of another job)."""
        hidden = [node for node in map(self.find_node, hide) if node is not None and node.visible()]
        for node in hidden:
            node.setVisible(False)
        try:
            if hidden:
                self.document.refreshProjection()
            self.document.waitForDone()
            return _bytes(self.document.pixelData(rect.x, rect.y, rect.width, rect.height))
        finally:
            for node in hidden:
                node.setVisible(True)
            if hidden:
                self.refresh()

    def read_selection(self, rect: Rect, feather: int = 0) -> bytes | None:
        """The selection over `rect`, one byte per pixel, optionally feathered; None without one."""
        selection = self.document.selection()
        if selection is None:
            return None
        if feather > 0:
            selection = selection.duplicate()  # never change the user's own selection
            self._extend_past_canvas(selection, feather)
            selection.feather(feather)
        return _bytes(selection.pixelData(rect.x, rect.y, rect.width, rect.height))

    def _extend_past_canvas(self, selection: Any, margin: int) -> None:
        """Copy the selection's outermost rows and columns `margin` pixels past the canvas.

        Feathering counts what lies past the canvas as unselected, so a selection that reaches
        the canvas edge (Select All) would fade out along it and let the old picture show
        through there; with its edge continued outward, it fades only where it really ends.
        """
        width, height = int(self.document.width()), int(self.document.height())
        top = _bytes(selection.pixelData(0, 0, width, 1))
        selection.setPixelData(top * margin, 0, -margin, width, margin)
        bottom = _bytes(selection.pixelData(0, height - 1, width, 1))
        selection.setPixelData(bottom * margin, 0, height, width, margin)
        tall = height + 2 * margin  # the columns include the rows just added: corners too
        for x, outside in ((0, -margin), (width - 1, width)):
            column = _bytes(selection.pixelData(x, -margin, 1, tall))
            strip = b"".join(bytes([value]) * margin for value in column)
            selection.setPixelData(strip, outside, -margin, margin, tall)

    def select_rect(self, rect: Rect) -> None:
        """Replace the selection with a rectangle (used by scripts and tests)."""
        selection = Selection()
        selection.select(rect.x, rect.y, rect.width, rect.height, 255)
        self.document.setSelection(selection)

    # --- layers -------------------------------------------------------------------------

    def find_node(self, node_id: str) -> Any | None:
        stack = list(self.document.topLevelNodes())
        while stack:
            node = stack.pop()
            if str(node.uniqueId().toString()) == node_id:
                return node
            stack.extend(node.childNodes())
        return None

    def _add_on_top(self, node: Any, *, keep_active: bool) -> None:
        """Add above every layer; with `keep_active`, the user's active layer stays active."""
        active = self.document.activeNode()
        self.document.rootNode().addChildNode(node, None)
        # Krita adds the node in a background stroke: wait, or a search right after misses it
        # and the active-layer switch would land after ours.
        self.document.waitForDone()
        if keep_active and active is not None:
            self.document.setActiveNode(active)
            # Krita's layer manager switches to the new node from a queued signal, after this
            # returns: switch back once more when the event loop has delivered it.
            if QtCore.QCoreApplication.instance() is not None:
                QtCore.QTimer.singleShot(0, lambda: self.document.setActiveNode(active))

    def create_preview_layer(self, name: str, rect: Rect, pixels: bytes) -> str:
        """A locked layer on top holding `pixels` in `rect`; returns its node id."""
        node = self.document.createNode(name, "paintlayer")
        node.setPixelData(pixels, rect.x, rect.y, rect.width, rect.height)
        self._add_on_top(node, keep_active=True)  # the artist keeps painting where they were
        node.setLocked(True)
        self.refresh()
        return str(node.uniqueId().toString())

    def paint_preview(self, node_id: str, rect: Rect, pixels: bytes) -> bool:
        """Replace the preview's pixels; False when the user deleted the preview layer."""
        node = self.find_node(node_id)
        if node is None:
            return False
        # Every image of a job covers exactly `rect` with the same shape: no need to clear first.
        node.setPixelData(pixels, rect.x, rect.y, rect.width, rect.height)
        self.refresh()
        return True

    def finish_preview(self, node_id: str, name: str, rect: Rect, pixels: bytes) -> str | None:
        """Turn the preview layer into a normal active layer holding `pixels`, under `name`;
        None when the user deleted the preview layer.

        The layer stays where the preview was added, so the undo step that added it is the
        job's only one: Ctrl+Z takes the result away. Removing the preview and adding a new
        layer instead would leave a step that brings the locked preview back on a second Ctrl+Z
        (renaming, locking and pixel writes from Python are not undo steps in Krita).
        """
        node = self.find_node(node_id)
        if node is None:
            return None
        node.setPixelData(pixels, rect.x, rect.y, rect.width, rect.height)
        node.setName(name)
        node.setLocked(False)
        node.setVisible(True)
        self.document.setActiveNode(node)
        self.refresh()
        return node_id

    def retire_preview(self, node_id: str, name: str) -> None:
        """Remove a preview layer, first renamed and unlocked: an undo that brings it back
        then brings back an ordinary layer named for what happened, not a live-looking preview."""
        node = self.find_node(node_id)
        if node is not None:
            node.setName(name)
            node.setLocked(False)
            node.remove()
            self.document.waitForDone()
            self.refresh()

    def release_stale_previews(self, prefix: str, new_prefix: str, keep: set[str]) -> int:
        """Unlock and rename (`prefix` -> `new_prefix`) the layers named like previews that no
        job follows (a document saved before Apply or Discard, then opened again), except the
        node ids in `keep`; returns how many."""
        released = 0
        stack = list(self.document.topLevelNodes())
        while stack:
            node = stack.pop()
            stack.extend(node.childNodes())
            name = str(node.name())
            if name.startswith(prefix) and str(node.uniqueId().toString()) not in keep:
                node.setName(new_prefix + name[len(prefix) :])
                node.setLocked(False)
                released += 1
        if released:
            self.refresh()
        return released

    def add_result_layer(self, name: str, rect: Rect, pixels: bytes) -> str:
        """A normal paint layer on top with `pixels` in `rect`, added as one undoable step."""
        node = self.document.createNode(name, "paintlayer")
        node.setPixelData(pixels, rect.x, rect.y, rect.width, rect.height)
        self._add_on_top(node, keep_active=False)  # like any new layer in Krita: it is active
        self.refresh()
        return str(node.uniqueId().toString())

    def refresh(self) -> None:
        self.document.refreshProjection()


# The documents the plugin has met, with the key it gave each (closed ones are dropped by
# `open_document_keys`; a closed document's wrapper equals no open one).
_known_documents: list[tuple[str, Any]] = []


def _document_key(document: Any) -> str:
    """A key for `document` that stays the same while it is open and no other document shares."""
    for key, known in _known_documents:
        if known == document:  # the same document, whichever wrapper object holds it
            return key
    key = uuid.uuid4().hex
    _known_documents.append((key, document))
    return key


def active_document() -> DocumentAdapter | None:
    document = Krita.instance().activeDocument()
    return DocumentAdapter(document) if document is not None else None


def open_document_keys() -> set[str]:
    keys = {_document_key(document) for document in Krita.instance().documents()}
    _known_documents[:] = [(key, known) for key, known in _known_documents if key in keys]
    return keys


def document_by_key(key: str) -> DocumentAdapter | None:
    for document in Krita.instance().documents():
        adapter = DocumentAdapter(document)
        if adapter.key == key:
            return adapter
    return None


def krita_version() -> str:
    return str(Krita.instance().version())


def read_setting(key: str, default: str) -> str:
    return str(Krita.instance().readSetting("mrflow", key, default))


def write_setting(key: str, value: str) -> None:
    Krita.instance().writeSetting("mrflow", key, value)


class KritaSettingsStore:
    """Settings kept in the user's kritarc under [mrflow]."""

    def read(self, key: str, default: str) -> str:
        return read_setting(key, default)

    def write(self, key: str, value: str) -> None:
        write_setting(key, value)


# --- registration with Krita (used by plugin.py) ---------------------------------------------

__all__ = ["DockWidget", "DockWidgetFactory", "DockWidgetFactoryBase", "Extension"]


def register_extension(extension_class: type) -> None:
    Krita.instance().addExtension(extension_class(Krita.instance()))


def register_docker(docker_id: str, docker_class: type) -> None:
    factory = DockWidgetFactory(docker_id, DockWidgetFactoryBase.DockRight, docker_class)
    Krita.instance().addDockWidgetFactory(factory)


def on_application_closing(callback: Callable[[], None]) -> None:
    Krita.instance().notifier().applicationClosing.connect(callback)
