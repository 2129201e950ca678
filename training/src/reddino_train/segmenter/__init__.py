"""Training of the plugin's learned segmenter (``napari_reddino.segment.learned``) without any labels:
:mod:`.synth` composes smear fields from the threshold segmenter's isolated cells with exact overlap ground
truth, :mod:`.train` fits the U-Net on them and writes safetensors weights."""
