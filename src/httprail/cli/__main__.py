"""``python -m httprail.cli``: the ``httprail`` command."""

from . import main

raise SystemExit(main())
