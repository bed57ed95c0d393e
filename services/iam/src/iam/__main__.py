import sys

from iam.main import main

sys.exit(main())
