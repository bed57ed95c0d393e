"""`python -m chaos --seed N --cycles K`."""

import sys

from chaos.cli import main

sys.exit(main())
