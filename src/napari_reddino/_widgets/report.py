"""A read-only table widget for the per-smear morphology report (or any small DataFrame)."""

from __future__ import annotations

import pandas as pd
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem


class FrameTable(QTableWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)  # no row numbers: the columns get the dock's width
        self.frame = pd.DataFrame()

    def set_frame(self, df: pd.DataFrame) -> None:
        self.frame = df
        self.clear()
        self.setRowCount(len(df))
        self.setColumnCount(len(df.columns))
        self.setHorizontalHeaderLabels([str(c) for c in df.columns])
        for r, row in enumerate(df.itertuples(index=False)):
            for c, value in enumerate(row):
                text = f"{value:.1f}" if isinstance(value, float) else str(value)
                self.setItem(r, c, QTableWidgetItem(text))
        self.resizeColumnsToContents()
