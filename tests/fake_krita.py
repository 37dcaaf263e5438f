"""A small fake of Krita's ``krita`` Python module, enough for the plugin's logic tests.

It mirrors the facts checked on real Krita (docs/krita-notes.md): U8 RGBA pixel data is B,G,R,A,
reads outside the image are zeros, ``uniqueId`` is a QUuid-like object, new layers are filled
before ``addChildNode``. It also records what real Krita cannot tell a test: every
``setPixelData`` into a layer that is already in the layer stack (the plugin must never do it),
floating messages and the foreground colour.

``install()`` puts it in ``sys.modules["krita"]`` and the plugin folder on ``sys.path``.
"""

import itertools
import sys
import types
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "krita_plugin"
_uids = itertools.count(1)


class Signal:
    def __init__(self):
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def emit(self, *args):
        for slot in list(self._slots):
            slot(*args)


class Uuid:
    def __init__(self):
        self._text = "{%08x-0000-4000-8000-000000000000}" % next(_uids)

    def toString(self):
        return self._text


class Selection:
    def __init__(self, x, y, w, h):
        self._rect = (x, y, w, h)

    def x(self):
        return self._rect[0]

    def y(self):
        return self._rect[1]

    def width(self):
        return self._rect[2]

    def height(self):
        return self._rect[3]


class Node:
    def __init__(self, doc, name, node_type="paintlayer", model="RGBA", depth="U8"):
        self.doc, self._name, self._type = doc, name, node_type
        self._model, self._depth = model, depth
        self._uid = Uuid()
        self._parent, self._children = None, []
        self._pixels = bytearray(doc.width() * doc.height() * 4)
        self._opacity, self.writes_in_stack = 255, 0

    # identity and tree
    def name(self):
        return self._name

    def type(self):
        return self._type

    def uniqueId(self):
        return self._uid

    def parentNode(self):
        return self._parent

    def childNodes(self):
        return list(self._children)

    def colorModel(self):
        return self._model

    def colorDepth(self):
        return self._depth

    def opacity(self):
        return self._opacity

    def setOpacity(self, value):
        self._opacity = value

    def in_stack(self):
        node = self
        while node._parent is not None:
            node = node._parent
        return node is self.doc._root

    def addChildNode(self, child, above):
        if child._parent is not None:
            return False
        at = self._children.index(above) + 1 if above is not None else len(self._children)
        self._children.insert(at, child)
        child._parent = self
        self.doc.undo_stack.append(("add", child))
        return True

    def remove(self):
        self._parent._children.remove(self)
        self._parent = None

    # pixels: B,G,R,A, zeros outside the image
    def pixelData(self, x, y, w, h):
        W, H = self.doc.width(), self.doc.height()
        out = bytearray(w * h * 4)
        for row in range(h):
            sy = y + row
            if not 0 <= sy < H:
                continue
            x0, x1 = max(x, 0), min(x + w, W)
            if x0 >= x1:
                continue
            out[(row * w + x0 - x) * 4:(row * w + x1 - x) * 4] = self._pixels[(sy * W + x0) * 4:(sy * W + x1) * 4]
        return bytes(out)

    def setPixelData(self, data, x, y, w, h):
        assert len(data) == w * h * 4, "setPixelData with a buffer of the wrong size"
        if self.in_stack():
            self.writes_in_stack += 1
        W, H = self.doc.width(), self.doc.height()
        for row in range(h):
            sy = y + row
            x0, x1 = max(x, 0), min(x + w, W)
            if 0 <= sy < H and x0 < x1:
                self._pixels[(sy * W + x0) * 4:(sy * W + x1) * 4] = data[(row * w + x0 - x) * 4:(row * w + x1 - x) * 4]

    def __repr__(self):
        return f"<Node {self._name!r}>"


class Document:
    def __init__(self, width, height, name="test", model="RGBA", depth="U8"):
        self._size, self._name, self._model, self._depth = (width, height), name, model, depth
        self._root = Node(self, "root", "grouplayer", model, depth)
        self._active, self._selection, self.modified = None, None, False
        self.undo_stack = []

    def close(self):
        app = Krita.instance()
        app._documents = [d for d in app._documents if d is not self]
        if app._document is self:
            app._document = None
        return True

    def width(self):
        return self._size[0]

    def height(self):
        return self._size[1]

    def name(self):
        return self._name

    def colorModel(self):
        return self._model

    def colorDepth(self):
        return self._depth

    def rootNode(self):
        return self._root

    def topLevelNodes(self):
        return self._root.childNodes()

    def activeNode(self):
        return self._active

    def setActiveNode(self, node):
        self._active = node

    def selection(self):
        return self._selection

    def setSelection(self, selection):
        self._selection = selection

    def createNode(self, name, node_type):
        return Node(self, name, node_type, self._model, self._depth)

    def setModified(self, value):
        self.modified = value

    def refreshProjection(self):
        pass

    def waitForDone(self):
        pass

    # test helpers
    def add_layer(self, name, bgra=None, model=None, depth=None):
        node = Node(self, name, "paintlayer", model or self._model, depth or self._depth)
        if bgra is not None:
            node.setPixelData(bgra, 0, 0, self.width(), self.height())
        self._root.addChildNode(node, self._root._children[-1] if self._root._children else None)
        self.undo_stack.clear()
        self._active = node
        return node

    def layer_names(self):
        return [n.name() for n in self._root.childNodes()]

    def undo(self):
        """Undo the last ``addChildNode``; like Krita, the layer below becomes active."""
        kind, node = self.undo_stack.pop()
        parent = node.parentNode()
        below = parent._children.index(node) - 1
        node.remove()
        if self._active is node:
            self._active = parent._children[below] if below >= 0 else None


class ManagedColor:
    def __init__(self, model="RGBA", depth="U8", profile=""):
        self.model, self.depth, self.profile, self.rgb = model, depth, profile, (0, 0, 0)

    @staticmethod
    def fromQColor(qcolor, canvas=None):
        color = ManagedColor()
        color.rgb = (qcolor.red(), qcolor.green(), qcolor.blue())
        return color

    def components(self):
        r, g, b = self.rgb
        return [b / 255, g / 255, r / 255, 1.0]


class View:
    def __init__(self, window):
        self.window, self.messages, self.foreground = window, [], None

    def showFloatingMessage(self, text, icon, timeout, priority):
        self.messages.append(text)

    def setForeGroundColor(self, color):
        self.foreground = color

    def document(self):
        return Krita.instance().activeDocument()


class Action:
    def __init__(self, action_id, text):
        self.id, self.text, self.triggered = action_id, text, Signal()

    def trigger(self):
        self.triggered.emit(False)


class Window:
    def __init__(self):
        self.actions, self.view = {}, View(self)

    def createAction(self, action_id, text, menu_location="tools/scripts"):
        self.actions[action_id] = Action(action_id, text)
        return self.actions[action_id]

    def activeView(self):
        return self.view


class Notifier:
    def __init__(self):
        self.windowCreated, self.active = Signal(), False

    def setActive(self, value):
        self.active = value


class Krita:
    _instance = None

    def __init__(self):
        self.settings, self.extensions, self.dock_factories = {}, [], []
        self.window, self._document, self._notifier = Window(), None, Notifier()
        self._documents = []

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @classmethod
    def reset(cls):
        cls._instance = cls()
        return cls._instance

    def activeDocument(self):
        return self._document

    def setActiveDocument(self, doc):
        self._document = doc
        if doc is not None and doc not in self._documents:
            self._documents.append(doc)

    def documents(self):
        return list(self._documents)

    def activeWindow(self):
        return self.window

    def readSetting(self, group, name, default):
        return self.settings.get((group, name), default)

    def writeSetting(self, group, name, value):
        self.settings[(group, name)] = value

    def addExtension(self, extension):
        self.extensions.append(extension)

    def addDockWidgetFactory(self, factory):
        self.dock_factories.append(factory)

    def notifier(self):
        return self._notifier

    def action(self, name):
        return self.window.actions.get(name)

    def icon(self, name):
        return None


class Extension:
    def __init__(self, parent=None):
        self.parent = parent


class DockWidgetFactoryBase:
    DockRight = 1


class DockWidgetFactory:
    def __init__(self, dock_id, area, cls):
        self.id, self.area, self.cls = dock_id, area, cls


def _dock_widget_class():
    """``DockWidget`` is a QDockWidget: build it only when Qt is importable."""
    try:
        from PyQt5.QtWidgets import QDockWidget
    except ImportError:
        return object

    class DockWidget(QDockWidget):
        def canvas(self):
            return None

    return DockWidget


def install():
    """Make ``import krita`` and ``import editgan_krita`` work in tests; returns the module."""
    if "krita" not in sys.modules:
        module = types.ModuleType("krita")
        for name in ("Krita", "Extension", "DockWidgetFactory", "DockWidgetFactoryBase", "ManagedColor",
                     "Selection", "Document", "Node"):
            setattr(module, name, globals()[name])
        module.DockWidget = _dock_widget_class()
        sys.modules["krita"] = module
    if str(PLUGIN_DIR) not in sys.path:
        sys.path.insert(0, str(PLUGIN_DIR))
    return sys.modules["krita"]
