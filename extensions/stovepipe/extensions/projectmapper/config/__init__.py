"""The config-driven reference ProjectMapper server (``stovepipe ext project-mapper``)."""

from stovepipe.extensions.projectmapper.config.server import ConfigProjectMapper, main, serve

__all__ = ["ConfigProjectMapper", "main", "serve"]
