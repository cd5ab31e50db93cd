"""The MrFlow docker's contents: a plain Qt widget over the shared `Runtime`.

It reads state from the controller and redraws on every change; it writes the artist's
choices (prompt, model, preset, seed, strength, size) into `runtime.params`, which the
Krita actions use too.
"""

from __future__ import annotations

import logging
from typing import Any

from mrflow_krita import krita_adapter
from mrflow_krita.controller import JobRefused
from mrflow_krita.jobs import HistoryEntry, JobKind, JobState, format_seconds
from mrflow_krita.log import log_file
from mrflow_krita.qt import QtCore, QtGui, QtWidgets
from mrflow_krita.runtime import Runtime
from mrflow_krita.settings import Settings

log = logging.getLogger(__name__)

W = QtWidgets
STATE_COLORS = {
    "connected": "#3a9a3a",
    "connecting": "#c89a1a",
    "disconnected": "#c03a3a",
    "refused": "#c03a3a",
}


class MrFlowPanel(QtWidgets.QWidget):  # type: ignore[misc]
    def __init__(self, runtime: Runtime, parent: Any = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.controller = runtime.controller
        self._build()
        self.controller.subscribe(self.refresh)
        # Krita makes one docker per window; a closed window's docker stops listening.
        self.destroyed.connect(lambda *_: runtime.controller.unsubscribe(self.refresh))
        # The selection has no change signal: the size line is recomputed twice a second.
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._refresh_size)
        self._timer.start()
        self.refresh()

    # --- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        layout = W.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)

        row = W.QHBoxLayout()
        self.connection_label = W.QLabel()
        self.connection_label.setWordWrap(True)
        self.connection_label.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
        )
        reconnect = W.QPushButton("Reconnect")
        reconnect.clicked.connect(lambda: self.runtime.connection.reconnect_now())
        row.addWidget(self.connection_label, 1)
        row.addWidget(reconnect)
        layout.addLayout(row)

        self.prompt = W.QPlainTextEdit()
        self.prompt.setPlaceholderText("Prompt: what to paint")
        self.prompt.setMaximumHeight(70)
        self.prompt.textChanged.connect(self._store_params)
        self.negative = W.QLineEdit(self.runtime.settings.negative_prompt)
        self.negative.setPlaceholderText("Negative prompt (optional)")
        self.negative.textChanged.connect(self._store_params)
        layout.addWidget(self.prompt)
        layout.addWidget(self.negative)

        form = W.QFormLayout()
        self.model = W.QComboBox()
        self.preset = W.QComboBox()
        self.model.currentIndexChanged.connect(self._store_params)
        self.preset.currentIndexChanged.connect(self._store_params)
        form.addRow("Model", self.model)
        form.addRow("Preset", self.preset)

        size_row = W.QHBoxLayout()
        self.size_label = W.QLabel()
        self.size_override = W.QCheckBox("Override")
        self.size_w, self.size_h = W.QSpinBox(), W.QSpinBox()
        for box in (self.size_w, self.size_h):
            box.setRange(64, 4096)
            box.setSingleStep(16)
            box.setValue(1024)
            box.setEnabled(False)
            box.valueChanged.connect(self._store_params)
        self.size_override.toggled.connect(self._override_toggled)
        size_row.addWidget(self.size_label, 1)
        size_row.addWidget(self.size_override)
        size_row.addWidget(self.size_w)
        size_row.addWidget(self.size_h)
        form.addRow("Size", size_row)

        seed_row = W.QHBoxLayout()
        self.seed_fixed = W.QCheckBox("Fixed")
        self.seed = W.QLineEdit()
        self.seed.setPlaceholderText("random")
        self.seed.setValidator(
            QtGui.QRegularExpressionValidator(QtCore.QRegularExpression(r"\d{0,19}"))
        )
        self.seed.textChanged.connect(self._store_params)
        self.seed_fixed.toggled.connect(self._store_params)
        copy_seed = W.QPushButton("Copy")
        copy_seed.setToolTip("Copy the seed shown (the last result's seed when random)")
        copy_seed.clicked.connect(lambda: self._copy(self.seed.text()))
        seed_row.addWidget(self.seed_fixed)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(copy_seed)
        form.addRow("Seed", seed_row)

        self.strength = W.QDoubleSpinBox()
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(self.runtime.settings.strength)
        self.strength.setToolTip("Refine: how much to change (0.3 touches up, 0.8 repaints)")
        self.strength.valueChanged.connect(self._store_params)
        form.addRow("Strength", self.strength)

        self.guidance = W.QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.setSpecialValueText("model default")  # shown at 0
        self.guidance.setValue(self.runtime.settings.guidance)
        self.guidance.setToolTip(
            "How closely to follow the prompt. With true guidance (the built-in model, "
            "Qwen-Image) 1 turns it off and each step takes half the time"
        )
        self.guidance.valueChanged.connect(self._store_params)
        form.addRow("Guidance", self.guidance)
        layout.addLayout(form)

        buttons = W.QHBoxLayout()
        self.generate = W.QPushButton("Generate")
        self.generate.setToolTip("Fill the selection, or the whole canvas when nothing is selected")
        self.generate.clicked.connect(self._generate)
        self.refine = W.QPushButton("Refine")
        self.refine.clicked.connect(lambda: self.runtime.start(JobKind.REFINE))
        self.cancel = W.QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        for button in (self.generate, self.refine, self.cancel):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.queue_label = W.QLabel()
        self.progress = W.QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        layout.addWidget(self.queue_label)
        layout.addWidget(self.progress)

        decide = W.QHBoxLayout()
        self.apply = W.QPushButton("Apply")
        self.apply.setToolTip(
            "Keep the result: the preview becomes a normal layer (Ctrl+Z takes it away)"
        )
        self.apply.clicked.connect(self._apply)
        self.discard = W.QPushButton("Discard")
        self.discard.clicked.connect(self._discard)
        decide.addWidget(self.apply)
        decide.addWidget(self.discard)
        layout.addLayout(decide)

        error_row = W.QHBoxLayout()
        self.error_label = W.QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d04040")
        self.error_label.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
        )
        open_log = W.QPushButton("Open log")
        open_log.clicked.connect(self._open_log)
        error_row.addWidget(self.error_label, 1)
        error_row.addWidget(open_log)
        layout.addLayout(error_row)

        layout.addWidget(W.QLabel("History"))
        self.history = W.QListWidget()
        self.history.setIconSize(QtCore.QSize(48, 48))
        self.history.setMinimumHeight(80)
        layout.addWidget(self.history, 1)
        history_buttons = W.QHBoxLayout()
        for text, slot in (
            ("Apply again", self._history_apply),
            ("Copy seed", self._history_seed),
            ("Delete", self._history_delete),
        ):
            button = W.QPushButton(text)
            button.clicked.connect(slot)
            history_buttons.addWidget(button)
        layout.addLayout(history_buttons)

        layout.addWidget(self._settings_box())

    def _settings_box(self) -> Any:
        box = W.QGroupBox("Settings")
        box.setCheckable(True)
        box.setChecked(False)  # folded away until wanted
        form = W.QFormLayout(box)
        settings = self.runtime.settings
        self.url = W.QLineEdit(settings.daemon_url)
        self.token = W.QLineEdit(settings.token_file)
        self.token.setPlaceholderText(str(settings.token_path()))
        self.max_side = W.QSpinBox()
        self.max_side.setRange(256, 4096)
        self.max_side.setSingleStep(64)
        self.max_side.setValue(settings.max_side)
        save = W.QPushButton("Save")
        save.clicked.connect(self._save_settings)
        form.addRow("Daemon", self.url)
        form.addRow("Token file", self.token)
        form.addRow("Longest side", self.max_side)
        form.addRow(save)
        for child in box.findChildren(W.QWidget):
            box.toggled.connect(child.setVisible)
            child.setVisible(False)
        return box

    # --- reading the form -----------------------------------------------------------------

    def _store_params(self, *_: Any) -> None:
        params = self.runtime.params
        params.prompt = self.prompt.toPlainText().strip()
        params.negative_prompt = self.negative.text().strip()
        params.model = self.model.currentData() or None
        params.preset = self.preset.currentData() or None
        params.strength = float(self.strength.value())
        params.guidance = float(self.guidance.value()) or None  # 0: the model's default
        params.size = (
            (self.size_w.value(), self.size_h.value()) if self.size_override.isChecked() else None
        )
        text = self.seed.text().strip()
        self.runtime.fixed_seed = int(text) if self.seed_fixed.isChecked() and text else None

    def _override_toggled(self, on: bool) -> None:
        self.size_w.setEnabled(on)
        self.size_h.setEnabled(on)
        self._store_params()
        self._refresh_size()

    # --- actions --------------------------------------------------------------------------

    def _generate(self) -> None:
        document = krita_adapter.active_document()
        has_selection = document is not None and document.selection_bounds() is not None
        self.runtime.start(JobKind.FILL_SELECTION if has_selection else JobKind.FILL_CANVAS)

    def _current_key(self) -> str | None:
        document = krita_adapter.active_document()
        return document.key if document is not None else None

    def _cancel(self) -> None:
        self.controller.cancel_all(self._current_key())

    def _decision_job(self) -> Any:
        waiting = self.controller.waiting_for_decision(self._current_key())
        return waiting[-1] if waiting else None

    def _apply(self) -> None:
        job = self._decision_job()
        if job is not None:
            self.controller.apply(job.id)

    def _discard(self) -> None:
        job = self._decision_job()
        if job is not None:
            self.controller.discard(job.id)

    def _selected_history(self) -> HistoryEntry | None:
        item = self.history.currentItem()
        key = self._current_key()
        if item is None or key is None:
            return None
        job_id = item.data(QtCore.Qt.ItemDataRole.UserRole)
        return next((e for e in self.controller.history.get(key, []) if e.job_id == job_id), None)

    def _history_apply(self) -> None:
        entry, key = self._selected_history(), self._current_key()
        if entry is not None and key is not None:
            self.controller.apply_history(key, entry)

    def _history_seed(self) -> None:
        entry = self._selected_history()
        if entry is not None:
            self._copy(str(entry.seed))

    def _history_delete(self) -> None:
        entry, key = self._selected_history(), self._current_key()
        if entry is not None and key is not None:
            self.controller.delete_history(key, entry.job_id)

    def _copy(self, text: str) -> None:
        if text:
            W.QApplication.clipboard().setText(text)

    def _open_log(self) -> None:
        path = log_file()
        if path is not None:
            QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(path)))

    def _save_settings(self) -> None:
        current = self.runtime.settings
        self.runtime.update_settings(
            Settings(
                daemon_url=self.url.text().strip() or current.daemon_url,
                token_file=self.token.text().strip(),
                model=self.model.currentData() or "",
                preset=self.preset.currentData() or current.preset,
                negative_prompt=self.negative.text().strip(),
                strength=float(self.strength.value()),
                guidance=float(self.guidance.value()),
                max_side=int(self.max_side.value()),
            )
        )

    # --- showing state --------------------------------------------------------------------

    def refresh(self) -> None:
        controller = self.controller
        color = STATE_COLORS.get(controller.connection_state, "#888888")
        detail = controller.connection_detail or controller.connection_state
        welcome = controller.welcome
        if controller.connected and welcome is not None:
            detail = f"connected · {welcome.device or 'daemon'} {welcome.daemon_version}"
        self.connection_label.setText(f'<span style="color:{color}">●</span> {detail}')
        self._fill_choices()

        key = self._current_key()
        active = [job for job in controller.active_jobs() if key is None or job.document_key == key]
        queued = [job for job in active if job.state is JobState.QUEUED]
        running = next((job for job in active if job.state is JobState.RUNNING), None)
        self.queue_label.setText(f"{len(queued)} queued" + (" · 1 running" if running else ""))
        if running is not None:
            self.progress.setValue(int(running.percent))
            self.progress.setFormat(f"{running.status_text} · %p%")
        elif queued:
            self.progress.setValue(0)
            self.progress.setFormat(queued[0].status_text)
        else:
            self.progress.setValue(100 if self._decision_job() else 0)
            self.progress.setFormat(
                "result ready: Apply or Discard" if self._decision_job() else "idle"
            )
        self.cancel.setEnabled(bool(active))
        waiting = self._decision_job() is not None
        self.apply.setEnabled(waiting)
        self.discard.setEnabled(waiting)
        self.error_label.setText(controller.last_error)
        last_seed = self.runtime.last_seed
        if not self.seed_fixed.isChecked() and last_seed is not None:
            self.seed.setText(
                str(last_seed)
            )  # the seed just used: copy it, or tick Fixed to keep it
        self._fill_history(key)
        self._refresh_size()

    def _fill_choices(self) -> None:
        controller = self.controller
        models = [
            (info.name, info.name + (" (loaded)" if info.loaded else ""))
            for info in controller.models
        ]
        presets = (
            [(info.name, info.name) for info in controller.welcome.presets]
            if controller.welcome
            else []
        )
        settings = self.runtime.settings
        for combo, entries, wanted, default in (
            (self.model, models, settings.model, controller.default_model),
            (
                self.preset,
                presets,
                settings.preset,
                controller.welcome.default_preset if controller.welcome else None,
            ),
        ):
            current = combo.currentData() or wanted or default
            if [combo.itemData(i) for i in range(combo.count())] == [name for name, _ in entries]:
                continue
            combo.blockSignals(True)
            combo.clear()
            for name, label in entries:
                combo.addItem(label, name)
            index = combo.findData(current)
            combo.setCurrentIndex(max(index, 0))
            combo.blockSignals(False)
        self._store_params()

    def _fill_history(self, key: str | None) -> None:
        entries = self.controller.history.get(key, []) if key else []
        ids = [entry.job_id for entry in entries]
        if ids == [
            self.history.item(i).data(QtCore.Qt.ItemDataRole.UserRole)
            for i in range(self.history.count())
        ]:
            return
        self.history.clear()
        for entry in entries:
            seconds = entry.total_seconds
            timing = f" · {format_seconds(seconds)}" if seconds is not None else ""
            item = W.QListWidgetItem(f"{entry.prompt[:60]}\nseed {entry.seed}{timing}")
            pixmap = QtGui.QPixmap()
            pixmap.loadFromData(entry.thumbnail_png)
            item.setIcon(QtGui.QIcon(pixmap))
            item.setData(QtCore.Qt.ItemDataRole.UserRole, entry.job_id)
            self.history.addItem(item)

    def _refresh_size(self) -> None:
        try:
            document = krita_adapter.active_document()
        except Exception:  # Krita is shutting down
            return
        if document is None:
            self.size_label.setText("no document")
            return
        document_has_selection = document.selection_bounds() is not None
        kind = JobKind.FILL_SELECTION if document_has_selection else JobKind.FILL_CANVAS
        try:
            params = self.runtime.params
            plan = self.controller.plan(document, kind, params.size, params.model)
        except (JobRefused, ValueError) as error:
            self.size_label.setText(str(error))
            return
        source = "selection" if document_has_selection else "canvas"
        text = f"{plan.size[0]} × {plan.size[1]} (from {source})"
        if document_has_selection:  # Refine works on the selection alone, without context
            refine = self.controller.plan(document, JobKind.REFINE, params.size, params.model)
            if refine.size != plan.size:
                text += f"; Refine {refine.size[0]} × {refine.size[1]}"
        self.size_label.setText(text)
        if not self.size_override.isChecked():
            self.size_w.blockSignals(True)
            self.size_h.blockSignals(True)
            self.size_w.setValue(plan.size[0])
            self.size_h.setValue(plan.size[1])
            self.size_w.blockSignals(False)
            self.size_h.blockSignals(False)
