"""`python -m lmlab ...`: the same as the `lmlab` script."""

import sys

from lmlab.cli import main

sys.exit(main())
