"""The verification gallery's thumbnails: a ``QListView`` in icon mode over a list model whose crops are made
when Qt first asks for them (a small cache), painted by a delegate; never a widget per cell. The gallery
(``gallery.GalleryWidget``) supplies the crops, colours and actions."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from qtpy.QtCore import QAbstractListModel, QEvent, QRect, QSize, Qt
from qtpy.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from qtpy.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate

from napari_reddino import style
from napari_reddino._widgets.annotate_panel import KEYS

THUMB = 72  # px, a thumbnail's side
PAD = 3  # px around it, where the class colour is drawn
CACHE = 1500  # thumbnails kept (a 1920x1080 screen shows about 150)
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
NATIVE = True  # the thumbnails and their scroll bar in native windows of their own (see CellView)


class CellModel(QAbstractListModel):
    """One item per cell in ``rows`` (pooled table rows, in display order); the thumbnail is cropped when Qt
    first asks for it."""

    def __init__(self, gallery):
        super().__init__()
        self.gallery = gallery
        self.rows = np.zeros(0, np.int64)
        self.starts: dict[int, str] = {}  # position -> the group starting there, as written on it
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()

    def set_rows(self, rows, starts=None) -> None:
        self.beginResetModel()
        self.rows = np.asarray(rows, np.int64)
        self.starts = dict(starts or {})
        self.endResetModel()

    def clear_cache(self) -> None:
        self._cache.clear()

    def rowCount(self, parent=None) -> int:  # noqa: N802 (Qt's name)
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        row = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(row)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.gallery.describe(row)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return self.gallery.describe(row)
        return None

    def thumbnail(self, row: int) -> QPixmap:
        pix = self._cache.get(row)
        if pix is not None:
            self._cache.move_to_end(row)
            return pix
        crop = np.ascontiguousarray(self.gallery.crop(row))
        h, w = crop.shape[:2]
        image = QImage(crop.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        pix = QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation))
        self._cache[row] = pix
        if len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return pix


class CellDelegate(QStyledItemDelegate):
    """Paints a thumbnail framed in its class colour (thin and faded for a prediction), a tick when verified,
    the class name on the first cell of each group, and the selection's yellow ring."""

    def __init__(self, gallery):
        super().__init__()
        self.gallery = gallery
        self.font = QFont()
        self.font.setPointSize(7)
        self.font.setBold(True)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(THUMB + 2 * PAD, THUMB + 2 * PAD)

    def paint(self, painter: QPainter, option, index) -> None:
        model = index.model()
        row = model.rows[index.row()]
        box = option.rect
        inner = QRect(box.x() + PAD, box.y() + PAD, THUMB, THUMB)
        painter.save()
        painter.fillRect(inner, QColor(20, 20, 20))
        pix = model.thumbnail(int(row))
        painter.drawPixmap(inner.x() + (THUMB - pix.width()) // 2, inner.y() + (THUMB - pix.height()) // 2, pix)
        colour, annotated = self.gallery.colour_of(int(row))
        pen = QPen(colour, PAD if annotated else 2)
        if not annotated:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRect(box.adjusted(1, 1, -2, -2))
        if self.gallery.verified[row]:
            badge = QRect(inner.right() - 15, inner.bottom() - 15, 15, 15)
            painter.fillRect(badge, QColor(0, 110, 0))
            painter.setPen(QPen(QColor(style.VERIFIED_COLOR), 2))
            painter.drawLine(badge.x() + 3, badge.y() + 8, badge.x() + 6, badge.y() + 11)
            painter.drawLine(badge.x() + 6, badge.y() + 11, badge.x() + 12, badge.y() + 4)
        name = model.starts.get(index.row())
        if name is not None:
            painter.setFont(self.font)
            strip = QRect(inner.x(), inner.y(), THUMB, 14)
            painter.fillRect(strip, QColor(0, 0, 0, 170))
            painter.setPen(QColor("white"))
            painter.drawText(strip.adjusted(2, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, name)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.setPen(QPen(QColor(style.SELECTION_COLOR), 3))
            painter.drawRect(inner.adjusted(1, 1, -2, -2))
        painter.restore()


class CellView(QListView):
    """The thumbnails, in rows that wrap; keys: 1-9, 0 assign, V / Enter verify, N next uncertain, Backspace
    clears the class, Ctrl+Z undoes."""

    def __init__(self, gallery):
        super().__init__()
        self.gallery = gallery
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setSpacing(1)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(THUMB // 3)
        self.setMinimumHeight(2 * (THUMB + 2 * PAD) + 8)
        if NATIVE:
            # Docked, every repaint of a plain widget makes Qt compose napari's whole window, whose canvases
            # are OpenGL widgets: 35-47 ms a frame in software OpenGL. Native windows are composed on their
            # own: docked scrolling 27 -> 38 frames a second (benchmarks/results_gallery.md).
            for widget in (self.viewport(), self.verticalScrollBar()):
                widget.setAttribute(Qt.WidgetAttribute.WA_NativeWindow)

    def _action(self, event):
        key, mods = event.key(), event.modifiers()
        text = event.text()
        if mods & Qt.KeyboardModifier.ControlModifier:
            return (lambda: self.gallery.undo()) if key == Qt.Key.Key_Z else None
        if text and text in KEYS and self.gallery.state is not None and \
                KEYS.index(text) < len(self.gallery.state.classes):
            return lambda: self.gallery.assign(KEYS.index(text))
        if key in (Qt.Key.Key_V, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return self.gallery.verify
        if key == Qt.Key.Key_N:
            return self.gallery.next_uncertain
        if key in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
            return lambda: self.gallery.assign(None)
        return None

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and self._action(event) is not None:
            event.accept()  # ours, before napari's window-wide shortcuts
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        action = self._action(event)
        if action is None:
            super().keyPressEvent(event)
        else:
            action()
            event.accept()
