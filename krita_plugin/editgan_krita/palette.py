"""The model's class palette as the docker shows it: one swatch per class."""

from typing import NamedTuple


class ClassColor(NamedTuple):
    index: int
    name: str
    rgb: tuple

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def text_hex(self) -> str:
        """Black or white, whichever reads better on the swatch (Rec. 601 luma)."""
        r, g, b = self.rgb
        return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def from_hello(classes) -> list:
    """``hello``'s ``classes`` [{name, color}] → palette entries, in class-id order."""
    palette = []
    for index, entry in enumerate(classes or ()):
        color = tuple(int(c) for c in entry["color"])[:3]
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f"class {entry.get('name')!r} has an invalid colour {entry['color']!r}")
        palette.append(ClassColor(index, str(entry["name"]), color))
    return palette


def by_name(palette, name: str):
    return next((c for c in palette if c.name == name), None)


def swatch_style(entry: ClassColor) -> str:
    return (f"QToolButton {{ background: {entry.hex}; color: {entry.text_hex()}; border: 1px solid #444;"
            " border-radius: 3px; padding: 2px 4px; }")
