"""Pixel buffers as plain bytes: channel swaps, crops, pastes and rectangle maths.

Krita's U8 RGBA layers hand out B,G,R,A bytes; the protocol speaks R,G,B,A. Krita's Python has no
numpy, so everything here works on whole strided slices (``b[0::4]``), which runs at C speed,
instead of per-pixel Python loops.
"""

from typing import NamedTuple


class Rect(NamedTuple):
    x: int
    y: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersected(self, other: "Rect") -> "Rect":
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def translated(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


def swap_red_blue(data) -> bytes:
    """BGRA ↔ RGBA (the same swap both ways)."""
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


bgra_to_rgba = swap_red_blue
rgba_to_bgra = swap_red_blue


def check_size(data, width: int, height: int, channels: int = 4) -> None:
    if len(data) != width * height * channels:
        raise ValueError(f"buffer of {len(data)} bytes is not {width}×{height}×{channels}")


def crop(data, width: int, height: int, rect: Rect, channels: int = 4) -> bytes:
    """The ``rect`` part (inside the ``width``×``height`` image) of a row-major buffer."""
    check_size(data, width, height, channels)
    if rect != rect.intersected(Rect(0, 0, width, height)):
        raise ValueError(f"crop {tuple(rect)} outside the {width}×{height} image")
    stride, row = width * channels, rect.width * channels
    start = rect.y * stride + rect.x * channels
    if rect.x == 0 and rect.width == width:
        return bytes(data[start:start + rect.height * stride])
    return b"".join(data[start + i * stride:start + i * stride + row] for i in range(rect.height))


def paste(dest: bytearray, width: int, height: int, src, rect: Rect, channels: int = 4) -> None:
    """Copy ``src`` (``rect.width``×``rect.height``) into ``dest`` at ``rect``, in place."""
    check_size(dest, width, height, channels)
    check_size(src, rect.width, rect.height, channels)
    if rect != rect.intersected(Rect(0, 0, width, height)):
        raise ValueError(f"paste {tuple(rect)} outside the {width}×{height} image")
    stride, row = width * channels, rect.width * channels
    start = rect.y * stride + rect.x * channels
    for i in range(rect.height):
        at = start + i * stride
        dest[at:at + row] = src[i * row:(i + 1) * row]
