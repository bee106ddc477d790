"""``python -m duet``: the ``duet`` command."""

from .cli import main

raise SystemExit(main())
