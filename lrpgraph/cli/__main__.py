"""``python -m lrpgraph.cli ...``: the command line (see :mod:`lrpgraph.cli`)."""

import sys

from . import main

sys.exit(main())
