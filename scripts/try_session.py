"""Save session… / Open session… tried as a user would, in a real napari window under a virtual display.

    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/try_session.py make OUT --image SMEAR --size 1920x1080
        napari opens SMEAR; the "Run the whole pipeline" dock runs on it (demo model); 6 cells are annotated in
        the annotation dock and the classifier trained; *Save session…* writes OUT/session; napari closes.
        Screenshot: OUT/before_1920x1080.png.
    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/try_session.py open OUT --size 1366x768
        a new napari, where segmenting, the model, UMAP and the classifier raise if called; *Open session…*
        puts OUT/session back. Screenshot: OUT/reopened_1366x768.png.

Each prints the seconds the save or the open took (from the click until the worker is done and the layers
are shown) and what came back.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def wait(predicate, timeout=600.0):
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("gave up waiting")
    for _ in range(20):
        QApplication.processEvents()


def viewer_at(size):
    import napari

    viewer = napari.Viewer(title="napari-reddino session trial", show=True)
    viewer.window._qt_window.resize(*size)
    return viewer


def screenshot(viewer, out: Path, name: str, size) -> Path:
    from napari_reddino._widgets.session import annotation_dock
    from napari_reddino._widgets.window import save_screenshot

    path = out / f"{name}_{size[0]}x{size[1]}.png"
    save_screenshot(viewer, annotation_dock(viewer), path, size=size)
    return path


def make(args, size) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer = viewer_at(size)
    viewer.open(args.image, plugin="napari")
    _, ann = viewer.window.add_plugin_dock_widget("napari-reddino", "4. Embedding & annotation")
    ann.project.value = str(out / "project")  # the annotations autosave there, not beside the (shared) image
    _, pipeline = viewer.window.add_plugin_dock_widget("napari-reddino", "Run the whole pipeline")
    pipeline.model.value = "demo"
    pipeline.start()
    wait(lambda: pipeline.worker is None)
    table = ann.state.table
    ann.canvas.select(list(range(0, 3)))
    ann.assign("spherocyte")
    ann.canvas.select(list(range(len(table) - 3, len(table))))
    ann.assign("target")
    ann.train("knn")
    wait(lambda: True)
    print(f"annotated {int((ann.state.class_column() != '').sum())} of {len(table)} cells; "
          f"annotations in {ann.state.store.path_of(table['image'].iloc[0])}")
    t0 = time.perf_counter()
    pipeline.session_buttons.save(out / "session")
    wait(lambda: pipeline.session_buttons.worker is None)
    print(f"save: {time.perf_counter() - t0:.2f} s, {len(list((out / 'session').iterdir()))} files in "
          f"{out / 'session'}")
    print(f"screenshot {screenshot(viewer, out, 'before', size)}")
    ann.close_canvas()
    viewer.close()


def forbid_recomputing() -> None:
    import napari_reddino._widgets.annotation_state as state
    import napari_reddino.embed as embed
    import napari_reddino.embedding as embedding
    import napari_reddino.models as models
    import napari_reddino.patch_features as patch_features
    import napari_reddino.segment as segment

    def refuse(*_, **__):
        raise AssertionError("recomputed on reopen")

    for module, name in ((segment, "iter_segment_cells"), (models, "load_model"), (embed, "iter_embed_cells"),
                         (patch_features, "iter_patch_features"), (embedding, "umap_embed"),
                         (embedding, "iter_umap_embed"), (state, "fit_on_top")):
        setattr(module, name, refuse)


def reopen(args, size) -> None:
    from napari_reddino._widgets.session import annotation_dock

    out = Path(args.out)
    forbid_recomputing()
    viewer = viewer_at(size)
    _, pipeline = viewer.window.add_plugin_dock_widget("napari-reddino", "Run the whole pipeline")
    wait(lambda: True)
    import napari_reddino._widgets.session as session_widgets

    shown = {}
    show = session_widgets.show_session

    def timed_show(*a, **kw):  # the part on the GUI thread: adding the layers and the map
        t = time.perf_counter()
        try:
            return show(*a, **kw)
        finally:
            shown["s"] = time.perf_counter() - t

    session_widgets.show_session = timed_show
    t0 = time.perf_counter()
    pipeline.session_buttons.open(out / "session")
    wait(lambda: pipeline.session_buttons.worker is None and annotation_dock(viewer) is not None
         and annotation_dock(viewer).state is not None)
    print(f"open: {time.perf_counter() - t0:.2f} s (of which {shown['s']:.2f} s adding the layers and the map on "
          f"the GUI thread); layers {[la.name for la in viewer.layers]}")
    state = annotation_dock(viewer).state
    print(f"map of {len(state.table)} cells; {int((state.class_column() != '').sum())} annotated; "
          f"{int((state.prediction != '').sum())} predicted; restored {state.store.restored}")
    print(f"screenshot {screenshot(viewer, out, 'reopened', size)}")
    annotation_dock(viewer).close_canvas()
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["make", "open"])
    parser.add_argument("out")
    parser.add_argument("--image", help="the smear to start from (make)")
    parser.add_argument("--size", default="1920x1080", help="window size WxH (the virtual screen's)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    (make if args.what == "make" else reopen)(args, size)


if __name__ == "__main__":
    main()
