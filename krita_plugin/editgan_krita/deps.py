"""Make pyzmq and msgpack importable inside Krita's own Python, or explain why they are not.

Official Krita builds ship a bare Python; the release zip vendors wheels under
``vendor/<cpXY>-<platform tag>/``. The folder matching this interpreter and machine goes first on
``sys.path``. A missing dependency must become a message in the docker, never a plugin that
silently fails to load, so :func:`setup` returns the problem instead of raising.
"""

import platform
import sys
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
                 "x86_64": "x86_64", "i386": "x86", "i686": "x86", "x86": "x86"}


def python_tag(version=None) -> str:
    major, minor = (version or sys.version_info)[:2]
    return f"cp{major}{minor}"


def _normal_arch(machine: str) -> str:
    return _ARCH_ALIASES.get(machine.lower(), machine.lower())


def _tag_arch(tag: str) -> str:
    if tag.endswith("x86_64"):
        return "x86_64"
    return {"win32": "x86", "win_amd64": "x86_64", "win_arm64": "arm64"}.get(
        tag, _normal_arch(tag.rsplit("_", 1)[-1]))


def platform_matches(tag: str, system: str, machine: str) -> bool:
    """Whether a wheel platform tag (``manylinux_2_28_x86_64``, ``win_amd64``…) runs here."""
    tag = tag.lower()
    if system.startswith("linux"):
        ok_os = tag.startswith(("manylinux", "musllinux", "linux"))
    elif system.startswith("win"):
        ok_os = tag.startswith("win")
    elif system == "darwin":
        ok_os = tag.startswith("macosx")
        if ok_os and tag.endswith("universal2"):
            return True
    else:
        return False
    return ok_os and _tag_arch(tag) == _normal_arch(machine)


def vendor_dir(root: Path = VENDOR, version=None, system: str = sys.platform,
               machine: str = platform.machine()):
    """The vendored wheel folder for this interpreter and machine, or None."""
    if not root.is_dir():
        return None
    prefix = python_tag(version) + "-"
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and folder.name.startswith(prefix) \
                and platform_matches(folder.name[len(prefix):], system, machine):
            return folder
    return None


def setup(root: Path = VENDOR):
    """Put the vendored wheels on ``sys.path``; return None when all is importable, else a message."""
    folder = vendor_dir(root)
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    missing = []
    for module in ("zmq", "msgpack"):
        try:
            __import__(module)
        except ImportError as e:
            missing.append(f"{'pyzmq' if module == 'zmq' else module} ({e})")
    if not missing:
        return None
    here = f"Python {sys.version_info[0]}.{sys.version_info[1]} on {sys.platform}/{platform.machine()}"
    return ("EditGAN needs " + " and ".join(missing) + f" in Krita's Python ({here}). "
            "Install the release zip built for this platform (Tools ▸ Scripts ▸ Import Python Plugin "
            "from File), or install pyzmq and msgpack into the Python Krita uses "
            "(Debian/Ubuntu: apt install python3-zmq python3-msgpack), then restart Krita.")


problem = setup()
