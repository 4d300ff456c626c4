"""``python -m opsearch.cli``: the `opsearch` command."""

import sys

from opsearch.cli import main

sys.exit(main())
