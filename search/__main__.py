"""``python -m search``: the same as the ``keras-attn-search`` console script."""

import sys

from search.cli import main

sys.exit(main())
