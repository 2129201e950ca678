import sys

from napari_reddino.cli import main

sys.exit(main())
