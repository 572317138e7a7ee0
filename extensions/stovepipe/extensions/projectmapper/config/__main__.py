"""``python -m stovepipe.extensions.projectmapper.config``, as ``stovepipe ext project-mapper``."""

from stovepipe.extensions.projectmapper.config.server import main

raise SystemExit(main())
