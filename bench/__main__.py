"""``python -m bench``: run the suite (``--help`` for the options)."""

from bench.run import main

raise SystemExit(main())
