"""``python -m stovepipe.extensions.buildrunner.local``, as ``stovepipe ext local-runner``."""

from stovepipe.extensions.buildrunner.local.server import main

raise SystemExit(main())
