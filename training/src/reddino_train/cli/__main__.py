"""``python -m reddino_train.cli`` (what torchrun launches: torchrun --nproc_per_node N -m reddino_train.cli train ...)."""

import sys

from . import main

sys.exit(main())
