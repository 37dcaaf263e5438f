#!/usr/bin/env python3
"""Install the EditGAN Krita plugin for the current user (``make install-krita``).

Copies ``krita_plugin/editgan_krita`` + its ``.desktop`` file into Krita's pykrita folder and sets
``enable_editgan_krita=true`` under ``[python]`` in kritarc, so the plugin is on at the next start
without a trip through Settings ▸ Configure Krita ▸ Python Plugin Manager. kritarc is edited as
text (Qt's INI dialect is not quite configparser's), touching only that one line. Close Krita
first: it rewrites kritarc when it quits.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = "editgan_krita"


def default_paths():
    """(resources folder holding pykrita/, kritarc file) for this OS."""
    home = Path.home()
    if sys.platform == "win32":
        appdata = Path(os.environ.get("APPDATA", home / "AppData" / "Roaming"))
        local = Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local"))
        return appdata / "krita", local / "kritarc"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "Krita", home / "Library" / "Preferences" / "kritarc"
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return data / "krita", config / "kritarc"


def set_ini_value(text: str, section: str, key: str, value: str) -> str:
    """Set ``key=value`` in ``[section]`` of INI text, leaving every other line as it was."""
    lines = text.splitlines()
    header = f"[{section}]"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == header)
    except StopIteration:
        if lines and lines[-1].strip():
            lines.append("")
        return "\n".join(lines + [header, f"{key}={value}"]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].split("=", 1)[0].strip() == key:
            lines[i] = f"{key}={value}"
            break
    else:
        lines.insert(start + 1, f"{key}={value}")
    return "\n".join(lines) + "\n"


def install(resources: Path, kritarc: Path, link: bool = False, server: str = None) -> Path:
    pykrita = resources / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    target = pykrita / MODULE
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    source = REPO / "krita_plugin" / MODULE
    if link:
        target.symlink_to(source, target_is_directory=True)
    else:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "krita_plugin" / f"{MODULE}.desktop", pykrita)
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    text = kritarc.read_text(encoding="utf-8") if kritarc.exists() else ""
    text = set_ini_value(text, "python", f"enable_{MODULE}", "true")
    if server:
        text = set_ini_value(text, "EditGAN", "server", server)
    kritarc.write_text(text, encoding="utf-8")
    return target


def main(argv=None) -> int:
    resources, kritarc = default_paths()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resources", type=Path, default=resources, help=f"Krita resources folder (default {resources})")
    p.add_argument("--kritarc", type=Path, default=kritarc, help=f"kritarc file (default {kritarc})")
    p.add_argument("--link", action="store_true", help="symlink instead of copying (plugin development)")
    p.add_argument("--server", default=None, help="also save this server address, e.g. tcp://127.0.0.1:5555")
    args = p.parse_args(argv)
    target = install(args.resources, args.kritarc, args.link, args.server)
    print(f"installed {target}\nenabled it in {args.kritarc}\n"
          "Start Krita (close it first if it is running), then Settings ▸ Dockers ▸ EditGAN.\n"
          "Krita's Python needs pyzmq and msgpack (Debian/Ubuntu: apt install python3-zmq python3-msgpack); "
          "for official Krita builds use the zip from `editgan package-krita` instead.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
