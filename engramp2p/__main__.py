"""``python -m engramp2p`` is the same as the ``engramp2p`` console script."""

from engramp2p.cli import main

raise SystemExit(main())
