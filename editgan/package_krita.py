"""``editgan package-krita``: the Krita plugin as a zip for *Tools ▸ Scripts ▸ Import Python Plugin
from File*, with pyzmq and msgpack vendored for named platforms and Python versions.

Official Krita builds ship their own Python without third-party packages, and pyzmq is binary, so
the zip carries the wheels unpacked under ``editgan_krita/vendor/cp<XY>-<platform tag>/``; the
plugin's ``deps.py`` picks the folder matching the running interpreter at import. Krita's importer
finds a plugin by its ``.desktop`` file and an explicit ``<module>/`` directory entry, so the zip
contains directory entries too. Standard library only (no torch): it runs anywhere pip runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import __version__

REPO = Path(__file__).resolve().parents[1]
PLUGIN_ROOT = REPO / "krita_plugin"
MODULE = "editgan_krita"
PACKAGES = ("pyzmq>=25", "msgpack>=1.0")
EXAMPLES = "manylinux_2_28_x86_64, manylinux_2_28_aarch64, win_amd64, macosx_11_0_arm64, macosx_10_15_x86_64"


class PackagingError(RuntimeError):
    pass


def python_tag(version: str) -> str:
    m = re.fullmatch(r"(\d)\.(\d{1,2})", version.strip())
    if not m:
        raise PackagingError(f"--python must look like 3.10, got {version!r}")
    return f"cp{m.group(1)}{m.group(2)}"


def download_wheels(python: str, platform: str, dest: Path, find_links: str | None = None) -> list[Path]:
    """``pip download`` the binary wheels of pyzmq and msgpack for one Python × platform."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
           "--platform", platform, "--python-version", python, "--implementation", "cp", "-d", str(dest), *PACKAGES]
    if find_links:
        cmd[4:4] = ["--no-index", "--find-links", find_links]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackagingError(f"pip could not get pyzmq/msgpack wheels for Python {python} on {platform} "
                             f"(known tags: {EXAMPLES}):\n{done.stderr.strip()[-2000:]}")
    wheels = sorted(dest.glob("*.whl"))
    names = {w.name.split("-")[0].lower() for w in wheels}
    if names != {"pyzmq", "msgpack"}:
        raise PackagingError(f"expected pyzmq and msgpack wheels, got {[w.name for w in wheels]}")
    return wheels


def unpack_wheels(wheels: list[Path], target: Path) -> None:
    """A wheel is a zip laid out for site-packages: unpacking it is installing it (no scripts needed)."""
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(target)


def stage_plugin(staging: Path) -> Path:
    """Copy the plugin sources (no caches, no stale vendor folder) into ``staging``."""
    module = staging / MODULE
    shutil.copytree(PLUGIN_ROOT / MODULE, module, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "vendor"))
    shutil.copy(PLUGIN_ROOT / f"{MODULE}.desktop", staging)
    readme = PLUGIN_ROOT / "README.md"
    if readme.is_file():
        shutil.copy(readme, module / "README.md")
    return module


def write_zip(staging: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(staging / f"{MODULE}.desktop", f"{MODULE}.desktop")
        zf.writestr(zipfile.ZipInfo(f"{MODULE}/"), "")
        for path in sorted((staging / MODULE).rglob("*")):
            arc = path.relative_to(staging).as_posix()
            if path.is_dir():
                zf.writestr(zipfile.ZipInfo(arc + "/"), "")
            else:
                zf.write(path, arc)
    return out


def build(platforms: list[str], pythons: list[str], out_dir: Path, find_links: str | None = None) -> Path:
    """Build the zip for every (Python, platform) pair; returns its path."""
    tags = [python_tag(p) for p in pythons]
    with tempfile.TemporaryDirectory(prefix="editgan-krita-") as tmp:
        tmp = Path(tmp)
        module = stage_plugin(tmp / "stage")
        for python, tag in zip(pythons, tags):
            for platform in platforms:
                wheels = download_wheels(python, platform, tmp / "wheels" / f"{tag}-{platform}", find_links)
                unpack_wheels(wheels, module / "vendor" / f"{tag}-{platform}")
        suffix = f"{tags[0]}-{platforms[0]}" if len(tags) == 1 and len(platforms) == 1 else "multi"
        return write_zip(tmp / "stage", Path(out_dir) / f"{MODULE}-{__version__}-{suffix}.zip")


def cmd_package_krita(args) -> int:
    try:
        path = build(args.platform, args.python, Path(args.out), args.find_links)
    except PackagingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): in Krita, Tools ▸ Scripts ▸ Import Python Plugin "
          "from File…, restart Krita, then Settings ▸ Dockers ▸ EditGAN")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("package-krita", help="build the Krita plugin zip with pyzmq + msgpack vendored",
                              description="Build a zip for Krita's Tools ▸ Scripts ▸ Import Python Plugin from File. "
                                          "--platform and --python may be repeated to cover several targets.")
    p.add_argument("--platform", action="append", required=True,
                   help=f"wheel platform tag of the Krita machine, e.g. {EXAMPLES}")
    p.add_argument("--python", action="append", required=True,
                   help="Python version inside Krita, X.Y (official 5.2 builds: 3.10; Debian/Ubuntu: the system one)")
    p.add_argument("--out", default="dist", help="output folder (default: dist)")
    p.add_argument("--find-links", default=None, help="take wheels from this folder instead of PyPI (offline builds)")
    p.set_defaults(func=cmd_package_krita)
