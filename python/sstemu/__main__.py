"""``python3 -m sstemu``: the command line (see :mod:`sstemu.cli`)."""

import sys

from .cli import main

sys.exit(main())
