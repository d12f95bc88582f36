"""`python -m cli ...` runs the `beacon` command (the tests start real servers this way)."""

import sys

from .main import main

sys.exit(main())
