"""``python -m refinex_datatrove.cli``: the ``refinex`` console script."""

import sys

from refinex_datatrove.cli import main

sys.exit(main())
