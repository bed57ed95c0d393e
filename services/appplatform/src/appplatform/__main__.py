import sys

from appplatform.main import main

sys.exit(main())
