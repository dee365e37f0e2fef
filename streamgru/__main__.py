"""``python -m streamgru``: the same as the ``streamgru`` command."""

from .cli import main

raise SystemExit(main())
