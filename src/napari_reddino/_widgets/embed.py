"""Dock "Extract RedDino features": image + Labels layer + model → one embedding per cell, kept on the
Labels layer (``metadata["reddino"]``, ``features`` one row per label) for PCA/UMAP/annotation, and
exportable to Parquet/CSV. Weights are downloaded only by the "Download weights" button."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info

from napari_reddino._widgets._common import TIPS, StepWidget, cell_types_box, image_layer_data, is_layer_kind
from napari_reddino._widgets.levels import LevelBox, find_image
from napari_reddino.images import InputError

if TYPE_CHECKING:
    import napari

OTHER = "other (path or spec below)"


class EmbedWidget(StepWidget):
    title = "Extract RedDino features"
    tab = "2. Features"  # its tab in the RedDino panel
    run_tip = ("Describe each cell with the RedDino model (a list of numbers per cell, kept on the cells "
               "layer) for the overlay, the map of similar cells and the classifier")

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__(napari_viewer)
        from napari_reddino.models import default_spec

        self.image = ComboBox(label="image", choices=self._layer_names("Image"), nullable=True)
        self.labels = ComboBox(label="cells (labels)", choices=self._layer_names("Labels"), nullable=True)
        self.model_choice = ComboBox(label="model", choices=self._model_choices, value=default_spec())
        self.image.tooltip = "The smear image the cells were found on"
        self.labels.tooltip = "The cells to describe: the '<image> cells' layer made by 'Segment cells'"
        self.model_choice.tooltip = ("The RedDino model that describes each cell: small is fastest, large the "
                                     "most detailed; a model marked 'not downloaded' needs 'Download weights' "
                                     "once. demo: a tiny model shipped for trying the plugin, not for results")
        self.model_path = LineEdit(label="model path", value="")
        self.model_path.tooltip = ("Only with 'other' chosen above: your own model, as local-dir:FOLDER or a "
                                   ".pth / .safetensors weights file (e.g. one made with reddino-train)")
        self.download_button = PushButton(text="Download weights")
        self.download_button.tooltip = ("Download the chosen RedDino model from Hugging Face (needs the internet "
                                        "once; afterwards it works offline)")
        self.precision = ComboBox(label="precision", choices=["auto", "bf16", "fp32"], value="auto")
        self.precision.tooltip = TIPS["precision"]
        self.batch_size = SpinBox(label="batch size", min=1, max=1024, value=64)
        self.batch_size.tooltip = ("How many cells the model looks at together: more is faster but needs more "
                                   "memory; lower it if the computer runs out of memory")
        self.pad_square = CheckBox(label="square crop with margin", value=False)
        self.pad_square.tooltip = ("Show the model each cell in a square picture with a margin around it, "
                                   "instead of the tight box around the cell (the published setting)")
        self.mask_neighbours = CheckBox(label="mask neighbouring cells", value=False)
        self.mask_neighbours.tooltip = ("Blank out the neighbouring cells in each cell's picture, so that only "
                                        "the cell itself is described")
        self.cell_types = cell_types_box()
        self.export_path = FileEdit(label="export to", mode="w", filter="*.parquet *.csv")
        self.export_path.tooltip = ("File to write the cells' descriptions to (.parquet or .csv), for analysis "
                                    "outside napari")
        self.export_button = PushButton(text="Export features")
        self.export_button.tooltip = "Write the chosen cells' descriptions and positions to the file above"
        self.level = LevelBox(self.image, resolve=lambda name: find_image(self.viewer, name))
        self.level.combo.tooltip = ("The resolution of the slide the cells were found at (set from the cells "
                                    "layer): the cells are described from the same pixels")
        self.form.extend([self.image, self.level.combo, self.labels, self.model_choice, self.model_path, self.download_button,
                          self.cell_types, self.precision, self.batch_size, self.pad_square,
                          self.mask_neighbours])
        self.add_below(Container(widgets=[self.export_path, self.export_button]).native)
        self.download_button.changed.connect(self.download)
        self.export_button.changed.connect(self.export)
        self.image.changed.connect(self._default_labels)
        self.labels.changed.connect(self._level_of_labels)
        self._downloader = None
        self._job = None
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # --- form ---------------------------------------------------------------------------------
    def _layer_names(self, kind: str):
        from napari_reddino._widgets._common import image_layer_choices
        from napari_reddino.style import is_drawn_layer_name

        def choices(*_):
            if kind == "Image":  # one RGB OME-Zarr's channel layers count as one image
                return [name for name, _ in image_layer_choices(self.viewer)]
            return [layer.name for layer in self.viewer.layers if is_layer_kind(layer, kind)
                    and not (kind == "Image" and is_drawn_layer_name(layer.name))]
        return choices

    def _model_choices(self, *_):
        from napari_reddino.models import MODEL_SPECS, is_cached

        out = []
        for spec in MODEL_SPECS:
            state = "" if is_cached(spec) else (" (not shipped)" if spec == "demo" else " (not downloaded)")
            out.append((spec + state, spec))
        return out + [(OTHER, OTHER)]

    def _refresh_layers(self, *_):
        previous = self.image.value
        self.image.reset_choices()
        self.labels.reset_choices()
        if self.image.choices and (previous is None or previous not in self.image.choices):
            self.image.value = self.image.choices[-1]  # the latest image
        self._default_labels()

    def _default_labels(self, *_):
        wanted = f"{self.image.value} cells"
        if wanted in self.labels.choices:
            self.labels.value = wanted
        elif self.labels.value is None and self.labels.choices:
            self.labels.value = self.labels.choices[-1]
        self._level_of_labels()

    def _level_of_labels(self, *_):
        """A multiscale image's level: the one its cells were found at (the cells layer says)."""
        self.level.refresh()
        if not self.level.combo.native.isHidden() and self.labels.value in self.viewer.layers:
            level = self.viewer.layers[self.labels.value].metadata.get("source_level")
            if level is not None and level in self.level.combo.choices:
                self.level.combo.value = level

    def spec(self) -> str:
        if self.model_choice.value == OTHER:
            spec = self.model_path.value.strip()
            if not spec:
                raise InputError("Received no model path; accepted: local-dir:FOLDER, a timm folder or a "
                                 ".pth/.safetensors checkpoint.")
            return spec
        return self.model_choice.value

    # --- run ------------------------------------------------------------------------------------
    def prepare(self):
        from napari_reddino.cells import check_labels

        if self.image.value is None or self.labels.value is None:
            raise InputError("Received no image or no Labels layer; accepted: an image layer and its cells "
                             "(segment first).")
        image_layer, labels_layer = find_image(self.viewer, self.image.value), self.viewer.layers[self.labels.value]
        if image_layer is None:
            raise InputError(f"Received image {self.image.value!r}, which is no longer open; accepted: an image "
                             "layer in the viewer.")
        image = image_layer_data(image_layer, self.level.value)
        labels = labels_layer.data[0] if labels_layer.multiscale else labels_layer.data
        hw = image.shape[:2] if image_layer.rgb or image.ndim == 2 else image.shape
        check_labels(labels, hw)  # a multiscale level other than the cells': refused in one line, before reading
        labels = np.asarray(labels)  # the image is read in the worker (a multiscale level from disk)
        features = labels_layer.features
        self._job = dict(image=image, labels=labels, image_name=image_layer.name, labels_name=labels_layer.name,
                         features=features.copy() if "label" in features.columns else None,
                         cell_types=tuple(self.cell_types.value),
                         spec=self.spec(), precision=self.precision.value, batch_size=int(self.batch_size.value),
                         pad_square=bool(self.pad_square.value), mask_neighbours=bool(self.mask_neighbours.value))
        return True

    def work(self):
        from napari_reddino.progress import Progress
        from napari_reddino.embed import iter_embed_cells
        from napari_reddino.models import load_model
        from napari_reddino.pipeline import predict_cells
        from napari_reddino.segment.types import left_out_note, select_cells, typed_table

        job = self._job
        job["image"] = np.asarray(job["image"])
        yield Progress(0, 0, "typing cells")
        objects = typed_table(job["image"], job["labels"], _current_rows(job["features"], job["labels"]))
        kept = select_cells(objects, job["cell_types"])
        job["objects"], job["left_out"] = objects, left_out_note(objects, kept)
        yield Progress(0, 0, "loading model")
        model = load_model(job["spec"], device="auto")
        table, emb = yield from iter_embed_cells(
            job["image"], job["labels"], model, batch_size=job["batch_size"], precision=job["precision"],
            pad_square=job["pad_square"], mask_neighbours=job["mask_neighbours"],
            label_ids=objects["label"].to_numpy()[kept])
        yield Progress(0, 0, "classifying the red cells")
        # every red cell pre-classified, as the pipeline does: the map, the gallery and the report start from it
        job["note"] = predict_cells(job["image"], job["labels"], objects, emb, table["label"].to_numpy(), job["spec"])
        return job, table, emb

    def show(self, result) -> None:
        from napari_reddino._widgets.layers import REDDINO, features_metadata
        from napari_reddino._widgets.smear_link import recolour_cells
        from napari_reddino.style import with_label_index

        job, table, emb = result
        if job["labels_name"] not in self.viewer.layers:
            raise InputError(f"Labels layer {job['labels_name']!r} was removed during the run; accepted: "
                             "keep it until the features are stored.")
        layer = self.viewer.layers[job["labels_name"]]
        objects, old = job["objects"], layer.features  # every object keeps its row, embedded or not
        features = objects.merge(table[["label", *[c for c in table.columns if c not in objects.columns]]],
                                 on="label", how="left")
        extra = [c for c in old.columns if c not in features.columns] if "label" in old.columns else []
        if extra:
            features = features.merge(old[["label", *extra]].drop_duplicates("label"), on="label", how="left")
        layer.features = with_label_index(features)  # hovering cell k shows cell k's row
        layer.metadata[REDDINO] = features_metadata(emb, table["label"].to_numpy(), job["spec"], job["image_name"])
        recolour_cells(self.viewer, layer, only_if_drawn=True)  # the shipped classifier's predictions shown (faded) on the smear
        left = f" ({job['left_out']})" if job["left_out"] else ""
        note = f". {job['note']}" if job.get("note") else ""
        show_info(f"{self.title}: {len(table)} cells × {emb.shape[1]} features on {layer.name!r}{left}{note}")

    # --- download and export ---------------------------------------------------------------------
    def download(self, *_):
        from napari.qt.threading import create_worker
        from napari.utils import progress

        from napari_reddino.models import download, parse_spec

        try:
            spec = self.spec()
            if parse_spec(spec)[0] != "hub":
                raise InputError(f"Received {spec!r} to download; accepted: a hf-hub: model (the others are "
                                 "local files).")
        except InputError as exc:
            show_error(str(exc))
            return None
        if self._downloader is not None:
            return self._downloader
        self.download_button.enabled = False
        worker = create_worker(download, spec, tqdm_class=progress, _start_thread=False, _connect={
            "returned": lambda path: show_info(f"Downloaded {spec}"),
            "errored": lambda exc: show_error(f"Download failed: {exc}"),  # connected here: no re-raise
            "finished": self._download_finished})
        self._downloader = worker
        worker.start()
        return worker

    def _download_finished(self):
        self._downloader = None
        self.download_button.enabled = True
        value = self.model_choice.value
        self.model_choice.reset_choices()
        self.model_choice.value = value

    def export(self, *_):
        from napari_reddino._widgets.layers import cells_features
        from napari_reddino.formats import features_frame, write_table

        try:
            layer = self.viewer.layers[self.labels.value] if self.labels.value else None
            stored = cells_features(layer) if layer is not None else None
            if stored is None:
                raise InputError("Received a Labels layer without RedDino features; accepted: one that this dock "
                                 "has processed (press Run first).")
            if not str(self.export_path.value) or str(self.export_path.value) == ".":
                raise InputError("Received no export file; accepted: a .parquet or .csv file name.")
            table = layer.features.set_index("label").loc[stored["labels"]].reset_index()
            path = write_table(features_frame(table, stored["embeddings"], stored["image"]),
                               self.export_path.value)
        except (InputError, KeyError, OSError) as exc:
            show_error(f"Export failed: {exc}")
            return None
        show_info(f"Wrote {len(table)} cells to {path}")
        return path


def _current_rows(features, labels):
    """The layer's feature rows when they describe exactly the labels painted now (else None: the labels
    were edited, so the types are measured again)."""
    if features is None:
        return None
    present = np.unique(labels)
    present = present[present > 0]
    rows = features.drop_duplicates("label").sort_values("label")
    same = len(rows) == len(present) and (rows["label"].to_numpy() == present).all()
    return rows.reset_index(drop=True) if same else None
