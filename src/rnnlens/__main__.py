import sys

from rnnlens.cli import main

sys.exit(main())
