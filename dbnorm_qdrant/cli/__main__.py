"""``python -m dbnorm_qdrant.cli``: the command line."""

import sys

from . import main

sys.exit(main())
