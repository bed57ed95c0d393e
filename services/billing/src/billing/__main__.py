import sys

from billing.main import main

sys.exit(main())
