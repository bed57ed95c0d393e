import sys

from gpuaas.main import main

sys.exit(main())
