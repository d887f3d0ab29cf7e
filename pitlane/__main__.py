"""`python -m pitlane ...`: the same command as the `pitlane` console script."""

import sys

from pitlane.cli import main

sys.exit(main())
