"""The tray icon, drawn with QPainter: a coloured disc per state, and the percent while working.

idle        green disc
generating  blue ring filling clockwise with the job's percent, the number in the middle
paused      amber disc with two bars
error       red disc with "!"
stopped     grey hollow ring
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPen, QPixmap

from mrflow_daemon.tray.state import IconState

COLOURS: dict[IconState, str] = {
    "idle": "#2e9d4f",
    "generating": "#2f6fde",
    "paused": "#e0a526",
    "error": "#d23b3b",
    "stopped": "#8a8a8a",
}
SIZE = 64


def draw(state: IconState, percent: int | None = None, size: int = SIZE) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    colour = QColor(COLOURS[state])
    margin = size * 0.06
    disc = QRectF(margin, margin, size - 2 * margin, size - 2 * margin)
    white = QColor("white")

    if state == "stopped":
        painter.setPen(QPen(colour, size * 0.12))
        painter.drawEllipse(disc.adjusted(size * 0.06, size * 0.06, -size * 0.06, -size * 0.06))
    elif state == "generating":
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour.lighter(170))
        painter.drawEllipse(disc)
        painter.setBrush(colour)
        span = round(360 * 16 * (percent or 0) / 100)
        painter.drawPie(disc, 90 * 16, -span)  # from twelve o'clock, clockwise
        painter.setBrush(white)
        inner = disc.adjusted(size * 0.17, size * 0.17, -size * 0.17, -size * 0.17)
        painter.drawEllipse(inner)
        if percent is not None:
            font = QFont()
            font.setBold(True)
            font.setPixelSize(round(size * (0.30 if percent < 100 else 0.24)))
            painter.setFont(font)
            painter.setPen(colour.darker(130))
            painter.drawText(inner, Qt.AlignmentFlag.AlignCenter, str(percent))
    else:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawEllipse(disc)
        painter.setBrush(white)
        if state == "paused":
            bar_w, bar_h = size * 0.12, size * 0.40
            top = (size - bar_h) / 2
            painter.drawRect(QRectF(size * 0.34, top, bar_w, bar_h))
            painter.drawRect(QRectF(size * 0.54, top, bar_w, bar_h))
        elif state == "error":
            painter.drawRect(QRectF(size * 0.44, size * 0.22, size * 0.12, size * 0.36))
            painter.drawEllipse(QRectF(size * 0.43, size * 0.64, size * 0.14, size * 0.14))
    painter.end()
    return pixmap


def icon(state: IconState, percent: int | None = None) -> QIcon:
    return QIcon(draw(state, percent))
