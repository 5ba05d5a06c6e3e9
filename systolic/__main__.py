"""``python -m systolic``: the command line."""

from .cli import main

raise SystemExit(main())
