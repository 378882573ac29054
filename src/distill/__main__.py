"""``python -m distill``: the same as the ``distill`` command."""

import sys

from distill.cli.main import main

sys.exit(main())
