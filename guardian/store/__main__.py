"""``python -m guardian.store``: the store's writer process (started by the daemon; see process.py)."""

import sys

from .child import main

sys.exit(main())
