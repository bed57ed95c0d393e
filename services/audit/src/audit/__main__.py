import sys

from audit.main import main

sys.exit(main())
