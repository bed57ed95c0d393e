import sys

from registry.main import main

sys.exit(main())
