import sys

from terminal_gateway.main import main

sys.exit(main())
