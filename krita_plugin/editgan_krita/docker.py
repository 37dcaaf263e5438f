"""The EditGAN docker: a thin view over the shared controller.

Widgets only forward clicks and render the controller's signals, so every window's docker shows
the same connection, job and presets.
"""

from krita import DockWidget

from . import deps, palette, settings
from .document import set_foreground
from .layer import format_strength
from .qt_compat import (CHECKED, CUSTOM_CONTEXT_MENU, HORIZONTAL, IMAGE_RGB888, ITEM_CHECKABLE, ITEM_ENABLED,
                        UNCHECKED, USER_ROLE, QCheckBox, QColor, QColorDialog, QComboBox, QGridLayout, QGroupBox,
                        QHBoxLayout, QImage, QInputDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMenu,
                        QPixmap, QProgressBar, QPushButton, QSlider, QSpinBox, QToolButton, QVBoxLayout, QWidget)

STATE_COLORS = {"connected": "#3a3", "connecting": "#d90", "server_gone": "#d33", "disconnected": "#888",
                "incompatible": "#d33"}
REFINE_CHOICES = (0, 10, 30)
PREVIEW_SIDE = 128
SWATCH_COLUMNS = 3


class EditGANDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("EditGAN")
        root = QWidget(self)
        self.setWidget(root)
        layout = QVBoxLayout(root)
        if deps.problem:
            note = QLabel(deps.problem, root)
            note.setWordWrap(True)
            note.setStyleSheet("color: #d33;")
            layout.addWidget(note)
            layout.addStretch(1)
            return
        from .controller import shared  # imports pyzmq: only once deps are known to be there
        self.controller = shared()
        self._build(root, layout)
        self._connect_signals()
        self._on_state(*self.controller.state)
        self._on_info(self.controller.info)
        self._on_busy(self.controller.job is not None)

    def canvasChanged(self, canvas):
        """Required by DockWidget; the controller asks Krita for the active document when needed."""

    # -- layout ---------------------------------------------------------------------------
    def _build(self, root, layout):
        self.status = QLabel(root)
        self.status.setWordWrap(True)
        self.address = QLineEdit(settings.read("server"), root)
        self.address.setToolTip("ZeroMQ address of editgan-server, e.g. tcp://127.0.0.1:5555")
        self.connect_button = QPushButton("Connect", root)
        self.keys = QLineEdit(settings.read("keys"), root)
        self.keys.setPlaceholderText("CURVE keys folder (remote servers only)")
        self.keys.setToolTip("Folder with server.key and your client key pair from `editgan-server keygen`")
        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        row.addWidget(self.connect_button)
        self.model = QLabel("Model: —", root)
        self.model.setWordWrap(True)
        self.analyze_button = QPushButton("Analyze layer", root)
        self.analyze_button.setToolTip("Embed the active layer (or the selection) and add an "
                                       "“EditGAN segmentation” layer to paint on")
        self.embed_steps = self._steps_box(root, "embed_steps", "More steps: a closer reconstruction, slower")
        layout.addWidget(self.status)
        layout.addLayout(row)
        layout.addWidget(self.keys)
        layout.addWidget(self.model)
        row = QHBoxLayout()
        row.addWidget(self.analyze_button, 1)
        row.addWidget(self.embed_steps)
        layout.addLayout(row)

        classes = QGroupBox("Classes (click to paint with)", root)
        box = QVBoxLayout(classes)
        self.swatches = QGridLayout()
        self.swatches.setSpacing(3)
        self.swatch_entries = []  # (button, palette entry), kept so the swatches can be restyled
        box.addLayout(self.swatches)
        self.part_colours = QLabel(classes)
        self.part_colours.setWordWrap(True)
        box.addWidget(self.part_colours)
        layout.addWidget(classes)

        self.steps = self._steps_box(root, "edit_steps", "Optimization steps of the edit (the paper: 30)")
        self.apply_button = QPushButton("Apply edit", root)
        self.apply_button.setToolTip("Send the layer and its painted segmentation; the result is a new layer")
        row = QHBoxLayout()
        row.addWidget(self.apply_button, 1)
        row.addWidget(self.steps)
        layout.addLayout(row)

        presets = QGroupBox("Presets (tick several to combine)", root)
        box = QVBoxLayout(presets)
        self.preset_list = QListWidget(presets)
        self.preset_list.setMaximumHeight(130)
        self.strength = QSlider(HORIZONTAL, presets)
        self.strength.setRange(-200, 300)
        self.strength.setSingleStep(5)
        self.strength_label = QLabel("×1.0", presets)
        self.refine = QComboBox(presets)
        for steps in REFINE_CHOICES:
            self.refine.addItem(f"refine {steps}", steps)
        saved = settings.read("refine_steps")
        self.refine.setCurrentIndex(REFINE_CHOICES.index(saved) if saved in REFINE_CHOICES else 0)
        self.apply_presets_button = QPushButton("Apply presets", presets)
        self.save_button = QPushButton("Save edit as preset…", presets)
        self.save_every = QCheckBox("from every painted layer", presets)
        self.save_every.setToolTip("Fit the preset to the same edit painted on several analyzed portraits: "
                                   "it then carries over to new portraits far better than one edit does.")
        box.addWidget(self.preset_list)
        row = QHBoxLayout()
        row.addWidget(QLabel("Strength", presets))
        row.addWidget(self.strength, 1)
        row.addWidget(self.strength_label)
        box.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.refine)
        row.addWidget(self.apply_presets_button, 1)
        box.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.save_button, 1)
        row.addWidget(self.save_every)
        box.addLayout(row)
        layout.addWidget(presets)

        self.progress = QProgressBar(root)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel", root)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.preview = QLabel(root)
        self.preview.setToolTip("The model's current image while a job runs")
        self.preview.hide()
        layout.addWidget(self.preview)
        self.message = QLabel(root)
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addStretch(1)

    @staticmethod
    def _steps_box(parent, key, tip):
        box = QSpinBox(parent)
        box.setRange(1, 1000)
        box.setValue(settings.read(key))
        box.setPrefix("steps ")
        box.setToolTip(tip)
        box.valueChanged.connect(lambda v: settings.write(key, v))
        return box

    def _connect_signals(self):
        c = self.controller
        c.state_changed.connect(self._on_state)
        c.info_changed.connect(self._on_info)
        c.presets_changed.connect(self._on_presets)
        c.busy_changed.connect(self._on_busy)
        c.progress.connect(self._on_progress)
        c.preview.connect(self._on_preview)
        c.message.connect(self._on_message)
        c.part_colours_changed.connect(self._on_part_colours)
        for signal in (self.connect_button.clicked, self.address.returnPressed, self.keys.returnPressed):
            signal.connect(lambda *_: c.connect_to(self.address.text().strip(), self.keys.text().strip()))
        self.analyze_button.clicked.connect(lambda: c.analyze(self.embed_steps.value()))
        self.apply_button.clicked.connect(lambda: c.apply_edit(self.steps.value()))
        self.refine.currentIndexChanged.connect(lambda i: settings.write("refine_steps", REFINE_CHOICES[i]))
        self.apply_presets_button.clicked.connect(self._apply_presets)
        self.save_button.clicked.connect(self._save_preset)
        self.cancel_button.clicked.connect(c.cancel)
        self.preset_list.currentItemChanged.connect(self._on_current_preset)
        self.strength.valueChanged.connect(self._on_strength)

    # -- controller → view ----------------------------------------------------------------
    def _on_state(self, state, detail):
        color = STATE_COLORS.get(state, "#888")
        self.status.setText(f"<span style='color:{color}'>●</span> {detail or state}")
        self._update_enabled()

    def _on_info(self, info):
        while self.swatches.count():
            self.swatches.takeAt(0).widget().deleteLater()
        self.swatch_entries = []
        if not info:
            self.model.setText("Model: —")
        else:
            model = info.get("model") or {}
            perceptual = info.get("perceptual") or {}
            self.model.setText(f"Model: <b>{model.get('name', '?')}</b> — {model.get('resolution', '?')}² "
                               f"on {info.get('device', '?')}"
                               + (f"<br><small>perceptual loss: {perceptual.get('kind')}</small>" if perceptual else ""))
            self.model.setToolTip(str(perceptual.get("detail") or ""))
            max_steps = (info.get("limits") or {}).get("max_steps")
            if max_steps:
                self.steps.setMaximum(int(max_steps))
                self.embed_steps.setMaximum(int(max_steps))
            try:
                entries = palette.from_hello(info.get("classes"))
            except (ValueError, KeyError, TypeError) as e:  # a broken server must not break the docker
                entries = []
                self._on_message(f"The server sent an unusable class palette: {e}", True)
            self.swatch_entries = [(self._swatch(entry), entry) for entry in entries]
            for i, (button, _) in enumerate(self.swatch_entries):
                self.swatches.addWidget(button, i // SWATCH_COLUMNS, i % SWATCH_COLUMNS)
        self._on_part_colours(self.controller.part_colours)
        self._on_presets(self.controller.presets)
        self._update_enabled()

    def _swatch(self, entry):
        button = QToolButton(self)
        button.setText(entry.label)
        button.setToolTip(f"{entry.name} — {entry.hex}: click to paint this class; "
                          "right-click to choose how new parts of it look")
        button.setSizePolicy(self.analyze_button.sizePolicy())
        button.clicked.connect(lambda: self._pick(entry))
        button.setContextMenuPolicy(CUSTOM_CONTEXT_MENU)
        button.customContextMenuRequested.connect(
            lambda pos: self.part_colour_menu(entry).exec(button.mapToGlobal(pos)))
        return button

    def _on_part_colours(self, colours):
        for button, entry in self.swatch_entries:
            button.setStyleSheet(palette.swatch_style(entry, colours.get(entry.name)))
        if colours:
            chosen = ", ".join(f"<span style='color:{palette.hex_of(rgb)}'>■</span> {name.replace('_', ' ')}"
                               for name, rgb in sorted(colours.items()))
            self.part_colours.setText(f"<small>New parts drawn in your colour: {chosen}</small>")
        else:
            self.part_colours.setText("<small>Right-click a class to choose the colour of parts you paint "
                                      "with it (e.g. red glasses).</small>")

    def part_colour_menu(self, entry):
        """The swatch's menu: choose the colour of new parts of this class, or give the choice back."""
        menu = QMenu(self)
        menu.addAction(f"Colour of new {entry.label}…", lambda: self._choose_part_colour(entry))
        automatic = menu.addAction(f"Automatic colour for {entry.label}",
                                   lambda: self.controller.set_part_colour(entry.name, None))
        automatic.setEnabled(entry.name in self.controller.part_colours)
        return menu

    def _choose_part_colour(self, entry):
        current = self.controller.part_colours.get(entry.name) or entry.appearance or entry.rgb
        colour = QColorDialog.getColor(QColor(*current), self, f"Colour of new {entry.label}")
        if colour.isValid():
            self.controller.set_part_colour(entry.name, (colour.red(), colour.green(), colour.blue()))

    def _pick(self, entry):
        if set_foreground(entry.rgb):
            self._on_message(f"Painting “{entry.label}”.", False)
        else:
            self._on_message("Open an image to paint with the class colours.", True)

    def _on_presets(self, presets):
        checked = {name for name, _ in self._checked_presets()}
        self.preset_list.clear()
        for preset in presets:
            name, strength = preset.get("name", "?"), float(preset.get("default_strength", 1.0))
            item = QListWidgetItem(self.preset_list)
            item.setFlags(ITEM_CHECKABLE | ITEM_ENABLED)
            item.setCheckState(CHECKED if name in checked else UNCHECKED)
            item.setData(USER_ROLE, [name, strength])
            item.setToolTip("classes: " + ", ".join(preset.get("classes") or []))
            self._label_item(item)
        self._update_enabled()

    def _on_busy(self, busy):
        self.cancel_button.setEnabled(busy)
        self._update_enabled()

    def _on_progress(self, text, value, maximum):
        self.progress.setRange(0, maximum)
        self.progress.setValue(value)
        self.progress.setFormat(text)

    def _on_preview(self, buffer):
        """Show the model image the server streams with progress (rgb8, usually tiny: scaled up)."""
        if buffer is None:
            self.preview.hide()
            return
        image = QImage(buffer.data, buffer.width, buffer.height, 3 * buffer.width, IMAGE_RGB888)
        height = max(1, PREVIEW_SIDE * buffer.height // max(1, buffer.width))
        self.preview.setPixmap(QPixmap.fromImage(image.scaled(PREVIEW_SIDE, height)))
        self.preview.show()

    def _on_message(self, text, error):
        self.message.setStyleSheet("color: #d33;" if error else "")
        self.message.setText(text)

    def _update_enabled(self):
        ready = self.controller.client.connected and self.controller.job is None
        segment = ready and self.controller.can_segment
        for button, enabled in ((self.analyze_button, segment), (self.apply_button, segment),
                                (self.save_button, ready), (self.apply_presets_button,
                                                            ready and self.preset_list.count() > 0)):
            button.setEnabled(enabled)

    # -- view → controller ----------------------------------------------------------------
    def _label_item(self, item):
        name, strength = item.data(USER_ROLE)
        item.setText(f"{name} ×{format_strength(strength)}")

    def _on_current_preset(self, item, _previous=None):
        if item is not None:
            self.strength.setValue(round(item.data(USER_ROLE)[1] * 100))

    def _on_strength(self, value):
        self.strength_label.setText(f"×{value / 100:.2f}")
        item = self.preset_list.currentItem()
        if item is not None:
            item.setData(USER_ROLE, [item.data(USER_ROLE)[0], value / 100])
            self._label_item(item)

    def _checked_presets(self):
        items = [self.preset_list.item(i) for i in range(self.preset_list.count())]
        return [tuple(item.data(USER_ROLE)) for item in items if item.checkState() == CHECKED]

    def _apply_presets(self):
        choices = self._checked_presets()
        current = self.preset_list.currentItem()
        if not choices and current is not None:  # nothing ticked: the highlighted preset
            choices = [tuple(current.data(USER_ROLE))]
        self.controller.apply_presets(choices, REFINE_CHOICES[self.refine.currentIndex()])

    def _save_preset(self):
        name, ok = QInputDialog.getText(self, "Save edit as preset", "Preset name:")
        if ok and name.strip():
            self.controller.save_preset(name.strip(), every_painted_layer=self.save_every.isChecked())
