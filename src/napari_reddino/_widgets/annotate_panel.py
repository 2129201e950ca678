"""The annotation half of the "Embedding & annotation" dock: class list and action buttons (no logic)."""

from __future__ import annotations

from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_reddino._widgets.dock_layout import DockColumn, WrappedLabel, fit_rows
from napari_reddino._widgets.report import FrameTable

KEYS = "1234567890"
MIN_CLASS_ROWS = 6  # the class list shows at least this many classes, all of them where there is room
MIN_REPORT_ROWS = 3  # the report table shows at least this many rows


def swatch(color: str) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(color))
    return QIcon(pix)


class AnnotationPanel(QWidget):
    def __init__(self, classes, parent=None):
        super().__init__(parent)
        self.class_list = QListWidget()
        self._item_names = []
        for i, c in enumerate(classes):
            key = f"[{KEYS[i]}] " if i < len(KEYS) else "     "
            self._item_names.append(f"{key}{c.name}")
            self.class_list.addItem(QListWidgetItem(swatch(c.color), f"{key}{c.name}"))
        self.class_list.setCurrentRow(0)
        # asks for the height of every class (fit_rows below lets it shrink to MIN_CLASS_ROWS)
        self.class_list.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.class_list.setToolTip("The cell classes, with the number of cells annotated in each: pick one, "
                                   "then 'Assign selection', or press its key over the map")
        self.assign_button = QPushButton("Assign selection")
        self.assign_button.setToolTip("Give the selected cells the class picked above (keys 1-9, 0 over the map)")
        self.clear_button = QPushButton("Clear class")
        self.clear_button.setToolTip("Take the class off the selected cells (Backspace over the map)")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last change of classes (Ctrl+Z over the map)")
        self.classifier = QComboBox()
        self.classifier.addItems(["logreg", "knn"])
        self.classifier.setToolTip("How the classes of the other cells are predicted: logreg (logistic "
                                   "regression, a good default) or knn (the class most common among the most "
                                   "similar annotated cells)")
        self.train_button = QPushButton("Train && predict")
        self.train_button.setToolTip("Learn from the annotated cells (at least 2 classes) and predict a class for "
                                     "every other cell, shown in faded colour")
        self.next_k = QSpinBox()
        self.next_k.setRange(1, 1000)
        self.next_k.setValue(20)
        self.next_k.setToolTip("How many cells 'Next to annotate' selects")
        self.next_button = QPushButton("Next to annotate")
        self.next_button.setToolTip("Select the cells whose prediction is least sure: annotating those teaches "
                                    "the classifier the most")
        self.export_cells_button = QPushButton("Export cell table…")
        self.export_cells_button.setToolTip("Save one row per cell: image, position, measurements, class, "
                                            "prediction (CSV)")
        self.export_report_button = QPushButton("Export report…")
        self.export_report_button.setToolTip("Save the number and percentage of cells of each class per image "
                                             "(CSV), and beside it the graded slide report (NAME_graded.csv and "
                                             ".html: ICSH grade per sample, warnings, cells of each class, the map)")
        self.status = WrappedLabel("Run the UMAP to start annotating.", lines=3)  # a saved-to path can take 3
        self.report = FrameTable()
        self.left_out = WrappedLabel("", lines=2)
        self.left_out.setToolTip("The UMAP, the classifier and the report use the objects the feature step "
                                 "analysed (red cells by default); the others are counted here.")

        box = QGroupBox("Annotation (keys 1-9, 0; Ctrl+Z undo)")
        grid = QGridLayout(box)
        grid.addWidget(self.class_list, 0, 0, 1, 3)
        grid.addWidget(self.assign_button, 1, 0)
        grid.addWidget(self.clear_button, 1, 1)
        grid.addWidget(self.undo_button, 1, 2)
        grid.addWidget(self.classifier, 2, 0)
        grid.addWidget(self.train_button, 2, 1, 1, 2)
        grid.addWidget(self.next_k, 3, 0)
        grid.addWidget(self.next_button, 3, 1, 1, 2)
        grid.addWidget(self.export_cells_button, 4, 0, 1, 2)
        grid.addWidget(self.export_report_button, 4, 2)
        grid.addWidget(self.status, 5, 0, 1, 3)
        report_box = QGroupBox("Morphology report (per image)")
        report_layout = QVBoxLayout(report_box)
        report_layout.addWidget(self.left_out)
        report_layout.addWidget(self.report)
        layout = DockColumn(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)
        layout.addWidget(report_box, 1)  # the height to spare goes to the report, once every class shows
        fit_rows(self.class_list, min(MIN_CLASS_ROWS, len(classes)), len(classes))
        fit_rows(self.report, MIN_REPORT_ROWS)
        self.set_enabled(False)

    def set_enabled(self, on: bool) -> None:
        for w in (self.assign_button, self.clear_button, self.undo_button, self.train_button,
                  self.next_button, self.export_cells_button, self.export_report_button):
            w.setEnabled(on)

    def set_counts(self, counts) -> None:
        """Show each class' number of annotated cells in the class list (``counts``: one int per class)."""
        for i, n in enumerate(counts):
            item = self.class_list.item(i)
            if item is not None:
                item.setText(f"{self._item_names[i]}  ({n})" if n else self._item_names[i])

    def current_class(self) -> int:
        return max(0, self.class_list.currentRow())
