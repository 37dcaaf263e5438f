"""The model's class palette as the docker shows it: one swatch per class."""

from typing import NamedTuple


class ClassColor(NamedTuple):
    index: int
    name: str
    rgb: tuple               # the palette colour the class is painted with
    appearance: tuple = None  # the class's usual colour in pictures, when the model knows it

    @property
    def hex(self) -> str:
        return hex_of(self.rgb)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def text_hex(self) -> str:
        """Black or white, whichever reads better on the swatch (Rec. 601 luma)."""
        r, g, b = self.rgb
        return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def hex_of(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _rgb(entry, key):
    color = tuple(int(c) for c in entry[key])[:3]
    if len(color) != 3 or not all(0 <= c <= 255 for c in color):
        raise ValueError(f"class {entry.get('name')!r} has an invalid {key} {entry[key]!r}")
    return color


def from_hello(classes) -> list:
    """``hello``'s ``classes`` [{name, color, appearance?}] → palette entries, in class-id order."""
    return [ClassColor(index, str(entry["name"]), _rgb(entry, "color"),
                       _rgb(entry, "appearance") if entry.get("appearance") is not None else None)
            for index, entry in enumerate(classes or ())]


def by_name(palette, name: str):
    return next((c for c in palette if c.name == name), None)


def swatch_style(entry: ClassColor, part_colour=None) -> str:
    """The swatch in its class colour; a thick lower edge in the colour chosen for new parts, if any."""
    edge = "" if part_colour is None else f" border-bottom: 5px solid {hex_of(part_colour)};"
    return (f"QToolButton {{ background: {entry.hex}; color: {entry.text_hex()}; border: 1px solid #444;"
            f" border-radius: 3px; padding: 2px 4px;{edge} }}")
