"""``python -m lstmjax``: the same as the ``lstmjax`` console script."""

import sys

from lstmjax.cli import main

sys.exit(main())
