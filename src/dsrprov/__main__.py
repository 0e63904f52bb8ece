"""``python -m dsrprov``."""

import sys

from dsrprov.cli import main

sys.exit(main())
