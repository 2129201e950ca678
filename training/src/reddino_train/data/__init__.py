"""Training data: building a set from smear folders (``prepare``), reading it (``dataset``), multi-crop
augmentation (``augment``) and a contact sheet of what the model sees (``contact_sheet``)."""
