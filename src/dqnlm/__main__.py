import sys

from dqnlm.cli import main

sys.exit(main())
