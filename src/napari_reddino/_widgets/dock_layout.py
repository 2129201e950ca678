"""How the plugin's docks share napari's window, so it fits a 1366x768 laptop as well as a 1920x1080 screen.

- Every step dock's form sits in a :class:`ScrollForm`: a dock asks napari's window for little height and a
  long form scrolls, instead of making the window taller than the screen (Qt grows a main window to the sum of
  its docks' minimum heights, off-screen if need be).
- The RedDino docks open as tabs of one panel (:func:`join_reddino_tabs`): napari stacks docks opened from the
  Plugins menu one under the other, each then too short to use.
- The UMAP canvas is a dock under the smear only, between napari's layer docks on the left and the RedDino
  panel on the right, which keep the window's whole height (:func:`place_umap_dock`); its height is dragged at
  the separator above it, and its title bar floats it as a window of its own.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QDockWidget, QFrame, QLabel, QMainWindow, QScrollArea, QTabWidget, QVBoxLayout, QWidget

UMAP_SHARE = 0.4  # of the height beside the side docks that the UMAP canvas takes when it opens
UMAP_MIN_HEIGHT = 160  # px: the canvas' buttons, legend and a map still worth looking at


class DockColumn(QVBoxLayout):
    """A dock's vertical layout that does not ask for a height per width. Where a layout does (it holds
    word-wrapped labels), QScrollArea sizes it at its preferred height, scrolling even where the rows would
    fit, and QBoxLayout shares out a short height without heeding its rows' minimum heights."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return False


class ScrollForm(QScrollArea):
    """A vertical scroll area around a dock's content: as wide as the content needs (no sideways scrolling),
    as short as a few rows."""

    MIN_HEIGHT = 120

    def __init__(self, content: QWidget, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        width = self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        return QSize(width, self.MIN_HEIGHT)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        hint = self.widget().sizeHint()
        return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())


FIELD_CHARACTERS = 10  # a choice box is at least this many characters wide, whatever its longest choice


def narrow_fields(root: QWidget) -> None:
    """Let a form be narrower than its longest texts: choice boxes sized for ``FIELD_CHARACTERS`` characters
    (not their longest layer name) and word-wrapped labels (a step's result line) for a few words, not one line.
    Docks share one tabbed panel, as wide as its widest form allows: a form wider than the panel was cut off
    at its right edge (the segment dock's result line and Cancel button beside the pipeline's, at 1920x1080
    and at 1366x768). Idempotent."""
    from qtpy.QtWidgets import QComboBox, QLabel, QSizePolicy

    for box in root.findChildren(QComboBox):
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(FIELD_CHARACTERS)
    for label in root.findChildren(QLabel):
        if label.wordWrap() and not label.minimumWidth():
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance("x" * 12))
            label.setSizePolicy(QSizePolicy.Policy.Expanding, label.sizePolicy().verticalPolicy())  # the room left


def fit_rows(view, minimum: int, maximum: int | None = None) -> None:
    """Size a list or table view to show at least ``minimum`` rows (and at most ``maximum``, when given):
    in a scrolling dock its rows are then never squeezed out of sight. Kept up to date as napari's theme
    restyles the view (its font, hence its rows, grow when it is docked)."""
    fitter = _RowFitter(view, minimum, maximum)
    view.installEventFilter(fitter)
    fitter.fit()


class _RowFitter(QObject):
    EVENTS = (QEvent.Type.Polish, QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange)

    def __init__(self, view, minimum: int, maximum: int | None):
        super().__init__(view)
        self.view, self.minimum, self.maximum = view, minimum, maximum

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() in self.EVENTS:
            self.fit()
        return False

    def fit(self) -> None:
        view = self.view
        text_row = view.fontMetrics().height() + 6
        if hasattr(view, "verticalHeader"):  # a table: rows as tall as its text, whether it has rows yet or not
            view.verticalHeader().setDefaultSectionSize(text_row)
            row = text_row
            header = view.horizontalHeader().sizeHint().height() + view.horizontalScrollBar().sizeHint().height()
        else:
            row = max(view.sizeHintForRow(0) if view.model().rowCount() else 0, text_row - 2)
            header = 0
        frame = 2 * view.frameWidth() + header
        view.setMinimumHeight(frame + self.minimum * row)
        if self.maximum is not None:
            view.setMaximumHeight(frame + self.maximum * row)


BREAK = "\u200b"  # a zero-width space: where Qt may wrap a line inside a word


class WrappedLabel(QLabel):
    """A word-wrapped label with room for ``lines`` lines and no height per width (see :class:`DockColumn`;
    QLabel turns its height-for-width back on at every ``setText``, hence a subclass). A file path wraps at its
    folders (Qt wraps only at spaces and hyphens: a long path ran past the dock's edge, cut off at 1366x768);
    ``text()`` gives the text as set, and the whole text is the tooltip."""

    def __init__(self, text: str = "", lines: int = 2, parent=None):
        super().__init__("", parent)
        self.setWordWrap(True)
        self.setMinimumHeight(lines * self.fontMetrics().lineSpacing() + 2 * self.margin())
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._text = text
        super().setText(text.replace("/", "/" + BREAK).replace("\\", "\\" + BREAK).replace("_", "_" + BREAK))
        self.setToolTip(text)

    def text(self) -> str:
        return self._text

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return False


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def join_reddino_tabs(widget: QWidget) -> bool:
    """Tabify the dock holding ``widget`` with a RedDino dock already open in the same area of the window
    (and bring it to the front). Returns whether it joined one."""
    from napari_reddino._widgets._common import StepWidget

    dock = _dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return False
    # the tab's text (napari's own title bar keeps the dock's full name); "&" would mark a keyboard shortcut
    title = getattr(widget, "tab", "") or dock.windowTitle().removesuffix(" (napari-reddino)")
    dock.setWindowTitle(title.replace("&", "&&"))
    area = window.dockWidgetArea(dock)
    others = [d for d in window.findChildren(QDockWidget)
              if d is not dock and (isinstance(d.widget(), StepWidget) or getattr(d.widget(), "reddino_tab", False))
              and not d.isFloating()
              and d.isVisibleTo(window) and window.dockWidgetArea(d) == area]
    if not others:
        return False
    window.setTabPosition(area, QTabWidget.TabPosition.North)  # tabs at the top, where a panel's tabs are
    window.tabifyDockWidget(others[0], dock)
    dock.show()
    dock.raise_()
    return True


def place_umap_dock(window, canvas: QWidget, name: str = "UMAP"):
    """Dock ``canvas`` at the bottom of napari's ``window`` (a napari ``Window``, maybe behind the proxy
    napari hands plugins), under the smear only, at :data:`UMAP_SHARE` of the height; returns napari's dock."""
    canvas.setMinimumHeight(UMAP_MIN_HEIGHT)
    dock = window.add_dock_widget(canvas, name=name, area="bottom")
    qt_dock, main = _dock_of(canvas), canvas.window()  # Qt's own objects, not napari's private attributes
    if qt_dock is None or not isinstance(main, QMainWindow) or qt_dock.isFloating():
        return dock
    # the side docks keep the window's whole height: napari's layer controls and list need about 540 px,
    # all a 768 px screen leaves beside the menu and status bars
    main.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    main.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    column = main.height() - main.menuBar().height() - main.statusBar().height()
    main.resizeDocks([qt_dock], [max(UMAP_MIN_HEIGHT, int(UMAP_SHARE * column))], Qt.Orientation.Vertical)
    return dock
