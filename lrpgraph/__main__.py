"""``python -m lrpgraph ...``: the command line (see :mod:`lrpgraph.cli`)."""

import sys

from .cli import main

sys.exit(main())
