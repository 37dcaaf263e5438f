"""Test-only pykrita plugin: runs the EditGAN scenario once the main window exists.

It does nothing unless ``EDITGAN_E2E_CONFIG`` names a JSON config (see tests/test_krita_e2e.py).
"""

import json
import os

from krita import Extension, Krita


class DriverExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.driver = None

    def setup(self):
        path = os.environ.get("EDITGAN_E2E_CONFIG")
        if not path:
            return
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        notifier = Krita.instance().notifier()
        notifier.setActive(True)
        notifier.windowCreated.connect(lambda: self._start(config))

    def createActions(self, window):
        pass

    def _start(self, config):
        if self.driver is None:
            from .driver import Driver
            self.driver = Driver(config)
            self.driver.start()


Krita.instance().addExtension(DriverExtension(Krita.instance()))
