"""A faithful stand-in for Krita's `krita` module, for plain pytest.

It keeps what the plugin relies on real: documents hold a layer tree whose paint layers
store BGRA pixels for the whole canvas; the document's pixelData is the composite of the
visible layers ("over", straight alpha), like Krita's projection; selections are real
one-byte-per-pixel masks; `addChildNode` and `remove` are undo steps; adding a node makes
it the active layer; nodes and documents have stable unique ids. Behaviour was checked
against Krita 5.1.5 (see krita_adapter.py's notes).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

_ids = itertools.count(1)


class QUuidLike:
    def __init__(self) -> None:
        self._text = "{" + str(uuid.UUID(int=next(_ids))) + "}"

    def toString(self) -> str:
        return self._text


def _blank(width: int, height: int, channels: int) -> bytearray:
    return bytearray(width * height * channels)


def _read(
    buffer: bytearray, canvas_w: int, canvas_h: int, channels: int, x: int, y: int, w: int, h: int
) -> bytes:
    out = bytearray(w * h * channels)
    for row in range(h):
        sy = y + row
        if not 0 <= sy < canvas_h:
            continue
        x0, x1 = max(x, 0), min(x + w, canvas_w)
        if x0 >= x1:
            continue
        src = (sy * canvas_w + x0) * channels
        dst = (row * w + (x0 - x)) * channels
        out[dst : dst + (x1 - x0) * channels] = buffer[src : src + (x1 - x0) * channels]
    return bytes(out)


def _write(
    buffer: bytearray,
    canvas_w: int,
    canvas_h: int,
    channels: int,
    data: bytes,
    x: int,
    y: int,
    w: int,
    h: int,
) -> None:
    if len(data) != w * h * channels:
        raise ValueError(f"setPixelData: {len(data)} bytes for {w}x{h}x{channels}")
    for row in range(h):
        sy = y + row
        if not 0 <= sy < canvas_h:
            continue
        x0, x1 = max(x, 0), min(x + w, canvas_w)
        if x0 >= x1:
            continue
        src = (row * w + (x0 - x)) * channels
        dst = (sy * canvas_w + x0) * channels
        buffer[dst : dst + (x1 - x0) * channels] = data[src : src + (x1 - x0) * channels]


class Selection:
    """A mask over a region that grows as it is written, anywhere (Krita's selections are
    unbounded: they may extend past the canvas, and feathering grows them)."""

    def __init__(self) -> None:
        self._x0 = self._y0 = self._w = self._h = 0
        self._mask = bytearray()

    def _ensure(self, x: int, y: int, w: int, h: int) -> None:
        """Grow the stored region to cover the rectangle, keeping what is there."""
        if self._w and self._h:
            x1, y1 = max(self._x0 + self._w, x + w), max(self._y0 + self._h, y + h)
            x, y = min(self._x0, x), min(self._y0, y)
            w, h = x1 - x, y1 - y
        if (x, y, w, h) == (self._x0, self._y0, self._w, self._h):
            return
        grown = _blank(w, h, 1)
        if self._w and self._h:
            _write(grown, w, h, 1, bytes(self._mask), self._x0 - x, self._y0 - y, self._w, self._h)
        self._x0, self._y0, self._w, self._h, self._mask = x, y, w, h, grown

    def select(self, x: int, y: int, w: int, h: int, value: int) -> None:
        self.setPixelData(bytes([value]) * (w * h), x, y, w, h)

    def _bounds(self) -> tuple[int, int, int, int]:
        xs, ys = [], []
        for index, value in enumerate(self._mask):
            if value:
                ys.append(index // self._w)
                xs.append(index % self._w)
        if not xs:
            return 0, 0, 0, 0
        left, top = min(xs), min(ys)
        return self._x0 + left, self._y0 + top, max(xs) - left + 1, max(ys) - top + 1

    def x(self) -> int:
        return self._bounds()[0]

    def y(self) -> int:
        return self._bounds()[1]

    def width(self) -> int:
        return self._bounds()[2]

    def height(self) -> int:
        return self._bounds()[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        return _read(self._mask, self._w, self._h, 1, x - self._x0, y - self._y0, w, h)

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> None:
        self._ensure(x, y, w, h)
        _write(self._mask, self._w, self._h, 1, data, x - self._x0, y - self._y0, w, h)

    def duplicate(self) -> Selection:
        copy = Selection()
        copy._x0, copy._y0, copy._w, copy._h = self._x0, self._y0, self._w, self._h
        copy._mask = bytearray(self._mask)
        return copy

    def feather(self, radius: int) -> None:
        """A separable box blur of width 2r+1 (Krita's is Gaussian: same 50% edge, softer ramp).

        Like Krita, the region grows by `radius` on each side so the soft edge fits; what lies
        outside the selection (past the canvas too) counts as unselected."""
        self._ensure(
            self._x0 - radius, self._y0 - radius, self._w + 2 * radius, self._h + 2 * radius
        )
        w, h, size = self._w, self._h, 2 * radius + 1
        horizontal = bytearray(w * h)
        for row in range(h):
            line = self._mask[row * w : (row + 1) * w]
            for col in range(w):
                lo, hi = max(0, col - radius), min(w, col + radius + 1)
                horizontal[row * w + col] = round(sum(line[lo:hi]) / size)
        result = bytearray(w * h)
        for col in range(w):
            column = horizontal[col::w]
            for row in range(h):
                lo, hi = max(0, row - radius), min(h, row + radius + 1)
                result[row * w + col] = round(sum(column[lo:hi]) / size)
        self._mask = result

    def clear(self) -> None:
        self._mask = _blank(self._w, self._h, 1)


class Node:
    def __init__(self, document: Document, name: str, node_type: str) -> None:
        self._document = document
        self._name = name
        self._type = node_type
        self._uuid = QUuidLike()
        self._children: list[Node] = []
        self._parent: Node | None = None
        self._locked = False
        self._visible = True
        self._pixels = _blank(document.width(), document.height(), 4)

    def name(self) -> str:
        return self._name

    def setName(self, name: str) -> None:
        self._name = name

    def type(self) -> str:
        return self._type

    def uniqueId(self) -> QUuidLike:
        return self._uuid

    def locked(self) -> bool:
        return self._locked

    def setLocked(self, value: bool) -> None:
        self._locked = value

    def visible(self) -> bool:
        return self._visible

    def setVisible(self, value: bool) -> None:
        self._visible = value

    def parentNode(self) -> Node | None:
        return self._parent

    def childNodes(self) -> list[Node]:
        return list(self._children)

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        doc = self._document
        return _read(self._pixels, doc.width(), doc.height(), 4, x, y, w, h)

    def projectionPixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        return self.pixelData(x, y, w, h)

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> bool:
        # Krita writes into locked layers from scripts too (the lock only stops the tools).
        doc = self._document
        _write(self._pixels, doc.width(), doc.height(), 4, bytes(data), x, y, w, h)
        return True

    def addChildNode(self, child: Node, above: Node | None) -> bool:
        index = len(self._children) if above is None else self._children.index(above) + 1
        self._children.insert(index, child)
        child._parent = self
        self._document._undo_stack.append(("add", child, self, index))
        self._document._active = child  # Krita activates an added layer
        return True

    def remove(self) -> bool:
        parent = self._parent
        if parent is None:
            return False
        index = parent._children.index(self)
        parent._children.remove(self)
        self._parent = None
        self._document._undo_stack.append(("remove", self, parent, index))
        return True


class Document:
    def __init__(
        self, width: int, height: int, name: str, color_model: str, color_depth: str
    ) -> None:
        self._width, self._height = width, height
        self._name = name
        self._model, self._depth = color_model, color_depth
        self._root = Node(self, "root", "grouplayer")
        background = Node(self, "Background", "paintlayer")
        self._root._children.append(background)
        background._parent = self._root
        self._active: Node | None = background
        self._selection: Selection | None = None
        self._undo_stack: list[tuple[str, Node, Node, int]] = []
        self.batchmode = False
        self.closed = False
        self.refreshes = 0

    def clone(self) -> Document:
        """Like Krita's *Create Copy From Current Image*: every node uuid is copied, the root's
        too (KisImage::clone with exactCopy). The caller adds it to Krita."""
        copy = Document(self._width, self._height, self._name, self._model, self._depth)

        def copy_node(source: Node, parent: Node | None) -> Node:
            node = Node(copy, source._name, source._type)
            node._uuid, node._pixels, node._locked = (
                source._uuid,
                bytearray(source._pixels),
                source._locked,
            )
            node._parent = parent
            node._children = [copy_node(child, node) for child in source._children]
            return node

        copy._root = copy_node(self._root, None)
        copy._active = copy._root._children[0] if copy._root._children else None
        return copy

    def name(self) -> str:
        return self._name

    def fileName(self) -> str:
        return ""

    def width(self) -> int:
        return self._width

    def height(self) -> int:
        return self._height

    def resizeImage(self, x: int, y: int, w: int, h: int) -> bool:
        """Resize the canvas (Image > Resize Canvas, or a crop): (x, y) becomes the origin."""
        stack = list(self._root.childNodes())
        while stack:
            node = stack.pop()
            stack.extend(node.childNodes())
            node._pixels = bytearray(_read(node._pixels, self._width, self._height, 4, x, y, w, h))
        self._width, self._height = w, h
        return True

    def setColorSpace(self, model: str, depth: str, profile: str) -> bool:
        """Image > Convert Image Color Space (the fake keeps its pixels as they are)."""
        self._model, self._depth = model, depth
        return True

    def colorModel(self) -> str:
        return self._model

    def colorDepth(self) -> str:
        return self._depth

    def rootNode(self) -> Node:
        return self._root

    def topLevelNodes(self) -> list[Node]:
        return self._root.childNodes()

    def createNode(self, name: str, node_type: str) -> Node:
        return Node(self, name, node_type)

    def activeNode(self) -> Node | None:
        return self._active

    def setActiveNode(self, node: Node) -> None:
        self._active = node

    def selection(self) -> Selection | None:
        if self._selection is None or self._selection.width() == 0:
            return None
        return self._selection  # like Krita: the document's own selection, not a copy

    def setSelection(self, selection: Selection | None) -> None:
        if selection is None:
            self._selection = None
            return
        self._selection = selection.duplicate()

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        """The composite of the visible layers, bottom to top ("over", straight alpha)."""
        out = bytearray(w * h * 4)
        for node in self._root.childNodes():
            if not node.visible():
                continue
            layer = node.pixelData(x, y, w, h)
            for i in range(0, len(out), 4):
                alpha = layer[i + 3]
                if alpha == 0:
                    continue
                below = out[i + 3]
                out_alpha = alpha + below * (255 - alpha) / 255
                for c in range(3):
                    mixed = layer[i + c] * alpha + out[i + c] * below * (255 - alpha) / 255
                    out[i + c] = round(mixed / out_alpha)
                out[i + 3] = round(out_alpha)
        return bytes(out)

    def refreshProjection(self) -> None:
        self.refreshes += 1

    def waitForDone(self) -> None:
        pass

    def setBatchmode(self, value: bool) -> None:
        self.batchmode = value

    def close(self) -> bool:
        Krita.instance()._documents.remove(self)
        self.closed = True
        return True

    def undo(self) -> None:
        """What Edit > Undo does to the steps the plugin makes (adding and removing layers)."""
        kind, node, parent, index = self._undo_stack.pop()
        if kind == "add":
            parent._children.remove(node)
            node._parent = None
        else:
            parent._children.insert(index, node)
            node._parent = parent


class _Signal:
    def __init__(self) -> None:
        self.slots: list[Any] = []

    def connect(self, slot: Any) -> None:
        self.slots.append(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self.slots):
            slot(*args)


class Notifier:
    def __init__(self) -> None:
        self.windowCreated = _Signal()
        self.applicationClosing = _Signal()


class Action:
    def __init__(self, action_id: str, text: str, menu: str) -> None:
        self.id, self.text, self.menu = action_id, text, menu
        self.triggered = _Signal()

    def trigger(self) -> None:
        self.triggered.emit(False)


class Window:
    """What `Extension.createActions` receives."""

    def __init__(self) -> None:
        self.actions: dict[str, Action] = {}

    def createAction(self, action_id: str, text: str, menu: str = "tools/scripts") -> Action:
        self.actions[action_id] = Action(action_id, text, menu)
        return self.actions[action_id]


class Krita:
    _instance: Krita | None = None

    def __init__(self) -> None:
        self.extensions: list[Any] = []
        self.dock_factories: list[Any] = []
        self._notifier = Notifier()
        self._documents: list[Document] = []
        self._active: Document | None = None
        self._settings: dict[tuple[str, str], str] = {}
        self.batchmode = False

    @classmethod
    def instance(cls) -> Krita:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @classmethod
    def reset(cls) -> None:
        cls._instance = None

    def version(self) -> str:
        return "5.1.5-fake"

    def createDocument(
        self,
        width: int,
        height: int,
        name: str,
        model: str,
        depth: str,
        profile: str,
        resolution: float,
    ) -> Document:
        document = Document(width, height, name, model, depth)
        self._documents.append(document)
        self._active = document
        return document

    def documents(self) -> list[Document]:
        return list(self._documents)

    def add_document(self, document: Document) -> None:
        """Test hook: open `document` (a clone) in Krita, as Krita's own copy action does."""
        self._documents.append(document)
        self._active = document

    def activeDocument(self) -> Document | None:
        return self._active if self._active in self._documents else None

    def setActiveDocument(self, document: Document) -> None:
        self._active = document

    def setBatchmode(self, value: bool) -> None:
        self.batchmode = value

    def addExtension(self, extension: Any) -> None:
        self.extensions.append(extension)
        extension.setup()

    def addDockWidgetFactory(self, factory: Any) -> None:
        self.dock_factories.append(factory)

    def notifier(self) -> Notifier:
        return self._notifier

    def readSetting(self, group: str, key: str, default: str) -> str:
        return self._settings.get((group, key), default)

    def writeSetting(self, group: str, key: str, value: str) -> None:
        self._settings[(group, key)] = value


class Extension:
    """Base of Krita extensions (registration is not exercised by the unit tests)."""

    def __init__(self, parent: Any = None) -> None:
        self.parent = parent


class DockWidget:
    """Krita's is a QDockWidget; the plugin only sets its title and its widget."""

    def __init__(self) -> None:
        self._title = ""
        self._widget: Any = None

    def setWindowTitle(self, title: str) -> None:
        self._title = title

    def windowTitle(self) -> str:
        return self._title

    def setWidget(self, widget: Any) -> None:
        self._widget = widget

    def widget(self) -> Any:
        return self._widget


class DockWidgetFactoryBase:
    DockRight = 1


class DockWidgetFactory:
    def __init__(self, docker_id: str, area: int, docker_class: type) -> None:
        self.docker_id, self.area, self.docker_class = docker_id, area, docker_class


def module_attributes() -> dict[str, Any]:
    names = (
        "Krita",
        "Selection",
        "Document",
        "Node",
        "Extension",
        "DockWidget",
        "DockWidgetFactory",
        "DockWidgetFactoryBase",
    )
    return {name: globals()[name] for name in names}
