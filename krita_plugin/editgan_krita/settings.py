"""User settings kept in Krita's own config (kritarc), never in the plugin folder.

Krita's *Import Python Plugin from File* deletes the plugin folder on reinstall, so anything
stored there would be lost; kritarc also lets tests pre-seed the server address.
"""

from krita import Krita

GROUP = "EditGAN"
DEFAULTS = {
    "server": "tcp://127.0.0.1:5555",
    "keys": "",               # CURVE keys folder, for servers on other machines
    "embed_steps": 100,       # the paper's embedding optimization length
    "edit_steps": 30,
    "refine_steps": 0,
}


def read(key: str):
    default = DEFAULTS[key]
    raw = Krita.instance().readSetting(GROUP, key, str(default))
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            return default
    return raw or default


def write(key: str, value) -> None:
    Krita.instance().writeSetting(GROUP, key, str(value))
