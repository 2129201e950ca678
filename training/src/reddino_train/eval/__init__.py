"""The RedDino paper's evaluation protocol on labelled cells (see ``run.evaluate``)."""
