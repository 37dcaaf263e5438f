"""The active Krita document, its selection and its view, behind small functions.

Everything that asks Krita "what is the user looking at" lives here so the controller can be
tested against a fake ``krita`` module and the UI never talks to Krita directly.
"""

from krita import Krita, ManagedColor

from .image import Rect
from .layer import PAINT_LAYER, uid
from .qt_compat import QColor


class DocumentError(Exception):
    """A user-facing reason why the current document or layer cannot be used."""


def active_document():
    doc = Krita.instance().activeDocument()
    if doc is None:
        raise DocumentError("Open an image first.")
    return doc


def document_key(doc) -> str:
    """A stable id for a document: its root node's uniqueId (Python wrappers are recreated per call)."""
    return uid(doc.rootNode())


def open_document_keys() -> set:
    """``document_key`` of every document open in Krita (sessions of closed ones are stale)."""
    return {document_key(doc) for doc in Krita.instance().documents()}


def check_rgba8(doc, node=None) -> None:
    """Refuse anything but 8-bit RGBA: other depths have other byte layouts and gamma."""
    for what, obj in (("image", doc), ("layer", node)):
        if obj is None:
            continue
        model, depth = obj.colorModel(), obj.colorDepth()
        if (model, depth) != ("RGBA", "U8"):
            raise DocumentError(
                f"EditGAN needs an 8-bit RGB/Alpha {what}; this {what} is {model}/{depth}. "
                "Convert it with Image ▸ Convert Image Color Space… (RGB/Alpha, 8-bit integer/channel).")


def active_paint_layer(doc):
    node = doc.activeNode()
    if node is None or node.type() != PAINT_LAYER:
        raise DocumentError("Select a paint layer (the portrait) in the Layers docker.")
    check_rgba8(doc, node)
    return node


def region(doc) -> Rect:
    """The part of the image to send: the selection's bounding box if there is one, else everything."""
    bounds = Rect(0, 0, doc.width(), doc.height())
    selection = doc.selection()
    if selection is None:
        return bounds
    box = Rect(selection.x(), selection.y(), selection.width(), selection.height()).intersected(bounds)
    if box.empty:
        raise DocumentError("The selection is empty or outside the image.")
    return box


def _view():
    window = Krita.instance().activeWindow()
    return window.activeView() if window is not None else None


def show_floating_message(text: str, error: bool = False) -> None:
    view = _view()
    if view is None:
        return
    icon = Krita.instance().icon("dialog-warning" if error else "dialog-information")
    view.showFloatingMessage(text, icon, 6000 if error else 3000, 1)


def set_foreground(rgb) -> bool:
    """Make ``rgb`` (sRGB bytes) the brush colour; False when no view is open.

    No canvas is passed to ``fromQColor`` so the display profile cannot shift the value: painted
    pixels then carry the exact palette colour the server expects.
    """
    view = _view()
    if view is None:
        return False
    view.setForeGroundColor(ManagedColor.fromQColor(QColor(*rgb)))
    return True
