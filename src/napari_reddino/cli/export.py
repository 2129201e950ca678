"""Export: the files other programs open, made from a RUN_DIR written by napari-reddino run or by Save
session… in napari (also one written before these files existed), without computing anything again.
Classes annotated since the run (the folder's annotation file) are put on their cells. --to picks some
of the files.

Writes, into --out (default: RUN_DIR):
- cells.h5ad: AnnData of the analysed cells with their RedDino features and UMAP (opens in scanpy)
- <stem>_cells.geojson, per image: the cell outlines with their classes (for QuPath)
- <stem>_cells.parquet, per image: the image's cell table
"""

from __future__ import annotations

from pathlib import Path

ACCEPTED = "a folder written by 'napari-reddino run --out' or 'Save session…' (with cells.csv)"


def add_parser(sub) -> None:
    from napari_reddino.exports import EXPORTS

    p = sub.add_parser("export", help="cells.h5ad (scanpy), QuPath GeoJSON and Parquet cell tables of a run folder",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a napari-reddino run (or saved session) folder")
    p.add_argument("--to", default=",".join(EXPORTS), help=f"which files, comma-separated: {', '.join(EXPORTS)} "
                                                           "(default: all)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR)")
    p.set_defaults(func=run)


def parse_exports(value) -> tuple[str, ...]:
    from napari_reddino.exports import EXPORTS
    from napari_reddino.images import InputError

    wanted = [w.strip().lower().lstrip(".") for w in str(value).split(",") if w.strip()]
    if not wanted or any(w not in EXPORTS for w in wanted):
        raise InputError(f"Received --to {value!r}; accepted: {', '.join(EXPORTS)} (one or more, comma-separated).")
    return tuple(dict.fromkeys(wanted))


def run(args) -> int:
    from napari_reddino.cli.report import read_cells
    from napari_reddino.formats import read_features, stem_of_labels
    from napari_reddino.exports import H5AD_FILE, run_info, write_exports
    from napari_reddino.grading.files import RunFolder, with_annotations
    from napari_reddino.images import InputError
    from napari_reddino.outputs import check_out_dir, output_stems
    from napari_reddino.session import UMAP_PARAMS, read_manifest

    to = parse_exports(args.to)
    folder = Path(args.run_dir)
    if not (folder / "cells.csv").is_file():
        what = "which holds no cells.csv" if folder.is_dir() else "which is not a folder"
        raise InputError(f"Received {str(folder)!r}, {what}; accepted: {ACCEPTED}.")
    out = check_out_dir(args.out or folder)  # before reading anything
    cells = read_cells(folder / "cells.csv")
    try:
        manifest = read_manifest(folder)
    except InputError:  # a run folder from before sessions: the files' usual names
        manifest = {}
    entries = {e["name"]: e for e in manifest.get("images") or [] if isinstance(e, dict) and "name" in e}
    names = list(entries) or list(dict.fromkeys(cells["image"].astype(str)))
    stems = dict(zip(names, output_stems(names)))
    for name, entry in entries.items():  # the stems the run used (a run's unreadable inputs took names too)
        labels_file = (entry.get("files") or {}).get("labels", "")
        if stem_of_labels(labels_file) is not None:
            stems[name] = stem_of_labels(labels_file)
    folder_files = RunFolder(folder, names)  # labels and annotation files, as the report finds them
    for name, path in folder_files.annotation_files.items():  # a folder moved with its annotation file
        if path and not Path(path).is_file() and (folder / Path(path).name).is_file():
            folder_files.annotation_files[name] = str(folder / Path(path).name)
    cells, note = with_annotations(cells, folder_files)
    features = {}
    for name in names:
        path = folder / ((entries.get(name, {}).get("files") or {}).get("features") or f"{stems[name]}_features.parquet")
        if path.is_file():
            table, X = read_features(path)
            features[name] = (table["label"].to_numpy(), X)
    if "h5ad" in to and not features:
        raise InputError(f"Received {str(folder)!r}, which holds no features (<image>_features.parquet) for "
                         f"{H5AD_FILE}; accepted: {ACCEPTED} with the embedding step, or --to geojson,parquet.")
    umap = manifest.get("umap") or {}
    info = run_info(folder, {"model": manifest.get("model"), "umap": {k: umap[k] for k in UMAP_PARAMS if k in umap}
                             or None})
    written = write_exports(cells, folder_files.labels, features, out, stems, info, to)
    if note:
        print(f"note: {note}")
    if "geojson" in to:
        for name in names:
            if folder_files.labels_file(name) is None:
                print(f"not made: {name}: its labels ({stems[name]}_labels.tif) are not in {folder}, so no GeoJSON")
    print(f"wrote {len(written)} files to {out.resolve()}:")
    for path in written:
        print(f"  {path.name}")
    return 0

