"""``python -m whatsreal.train``: see :mod:`whatsreal.train.cli`."""

import sys

from whatsreal.train.cli import main

sys.exit(main())
