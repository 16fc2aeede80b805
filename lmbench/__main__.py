import sys

from lmbench.cli.main import main

sys.exit(main())
