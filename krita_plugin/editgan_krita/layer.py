"""Reading layers and adding result layers, the only code that touches Krita node pixels.

The plugin never writes into an existing layer: ``setPixelData`` is not undoable in Krita, while
``addChildNode`` is. So every output is a *new* node filled before it is inserted, and one
Ctrl+Z removes it.
"""

from .image import Rect, paste, rgba_to_bgra, swap_red_blue

PAINT_LAYER = "paintlayer"
SEGMENTATION_NAME = "EditGAN segmentation"
EDIT_NAME = "EditGAN: edit"
SEGMENTATION_OPACITY = 160  # of 255: the portrait stays visible under the painted classes


def format_strength(value: float) -> str:
    """1 → "1.0", 0.25 → "0.25": layer names read "smile ×1.0"."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def preset_layer_name(choices) -> str:
    """[("smile", 1), ("glasses", 0.5)] → "EditGAN: smile ×1.0 + glasses ×0.5"."""
    return "EditGAN: " + " + ".join(f"{name} ×{format_strength(strength)}" for name, strength in choices)


def uid(node) -> str:
    """A node's stable identity as a string (Krita hands out a QUuid)."""
    u = node.uniqueId()
    return u.toString() if hasattr(u, "toString") else str(u)


def find_node(root, node_uid: str):
    """The node with this uniqueId under ``root``, or None (walks the tree: 5.1 has no lookup)."""
    stack = list(root.childNodes())
    while stack:
        node = stack.pop()
        if uid(node) == node_uid:
            return node
        stack.extend(node.childNodes())
    return None


def read_rgba(node, rect: Rect) -> bytes:
    """R,G,B,A bytes of ``rect`` (Krita's U8 layers are B,G,R,A)."""
    return swap_red_blue(bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height)))


def new_layer(doc, name: str, bgra: bytes, rect: Rect, opacity: int = 255):
    """A filled paint layer that is not yet in the layer stack."""
    node = doc.createNode(name, PAINT_LAYER)
    node.setPixelData(bgra, rect.x, rect.y, rect.width, rect.height)
    if opacity != 255:
        node.setOpacity(opacity)
    return node


def insert_above(anchor, node, siblings_to_skip=()):
    """Insert ``node`` in ``anchor``'s group, above ``anchor`` and any directly stacked layers whose uid
    is in ``siblings_to_skip`` (earlier EditGAN layers), so the newest result is the visible one."""
    parent = anchor.parentNode()
    children = list(parent.childNodes())  # bottom to top
    ids = [uid(c) for c in children]
    at = ids.index(uid(anchor))
    while at + 1 < len(children) and ids[at + 1] in siblings_to_skip:
        at += 1
    parent.addChildNode(node, children[at])
    return node


def add_segmentation_layer(doc, source, rgba: bytes, region: Rect, stacked_ids=()):
    """The "EditGAN segmentation" layer: the server's palette image at the analyzed region."""
    node = new_layer(doc, SEGMENTATION_NAME, rgba_to_bgra(rgba), region, SEGMENTATION_OPACITY)
    return insert_above(source, node, stacked_ids)


def result_pixels(doc, source, region: Rect, box, box_rgba: bytes) -> bytes:
    """The whole source layer (document bounds, B,G,R,A) with the server's ``box`` crop pasted in.

    ``box`` is relative to the region that was sent, so the result differs from the source only
    where the server changed pixels.
    """
    width, height = doc.width(), doc.height()
    pixels = bytearray(source.pixelData(0, 0, width, height))
    bx, by, bw, bh = box
    if bw > 0 and bh > 0:
        paste(pixels, width, height, rgba_to_bgra(box_rgba), Rect(region.x + bx, region.y + by, bw, bh))
    return bytes(pixels)


def add_result_layer(doc, source, name: str, pixels: bytes, stacked_ids=()):
    node = new_layer(doc, name, pixels, Rect(0, 0, doc.width(), doc.height()))
    return insert_above(source, node, stacked_ids)
