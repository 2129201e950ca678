"""View: open a saved session (a SESSION folder written by napari-reddino run or by Save session… in napari)
in napari, without segmenting, embedding or mapping again. Needs napari's window: pip install
'napari-reddino[gui]'.

Writes nothing, except with --screenshot FILE:
- FILE (e.g. shot.png): the napari window, and beside it shot_umap.png: the map
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("view", help="open a saved session (or a 'run --out' folder) in napari, recomputing nothing",
                       description=__doc__)
    p.add_argument("session", metavar="SESSION", help="the session folder (holds session.json)")
    p.add_argument("--screenshot", metavar="FILE", default=None,
                   help="save a screenshot of the napari window instead of keeping it open (needs an X display)")
    p.set_defaults(func=view)


def view(args) -> int:
    from napari_reddino.cli import require_gui
    from napari_reddino.session import read_session

    require_gui("napari-reddino view")
    session = read_session(Path(args.session))  # every file read and checked before napari opens
    import napari

    from napari_reddino._widgets.session import show_session

    viewer = napari.Viewer(title=f"napari-reddino: {Path(args.session).name}", show=True)
    dock = show_session(viewer, session)
    if not args.screenshot:
        napari.run()
        return 0
    from napari_reddino._widgets.window import save_screenshot

    written = save_screenshot(viewer, dock, Path(args.screenshot))
    if dock is not None:
        dock.close_canvas()  # the map's own canvas, before its window
    viewer.close()
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
