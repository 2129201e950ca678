"""Training of the plugin's learned segmenter (``napari_reddino.segment.learned``): :mod:`.fields` turns
labelled smears into network inputs and centre targets at the network's scale, :mod:`.train` fits the U-Net on
random crops of them and writes safetensors weights."""
