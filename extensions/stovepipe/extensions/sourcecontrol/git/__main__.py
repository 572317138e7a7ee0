"""``python -m stovepipe.extensions.sourcecontrol.git``, as ``stovepipe ext git``."""

from stovepipe.extensions.sourcecontrol.git.server import main

raise SystemExit(main())
