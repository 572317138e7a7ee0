"""The console's test helpers: Debian's chromium for Playwright, and a console served in
the test's event loop from a configuration, as ``stovepipe console`` would serve it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest
import uvicorn

from stovepipe.config import StovepipeConfig
from stovepipe.console.process import uvicorn_config
from stovepipe.runtime.processes import free_port


def chromium_path() -> str:
    """Debian's chromium; a clear failure (never a skip) when it is missing."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: the console's browser tests need Debian's headless "
            "Chromium (apt-get install -y chromium); Playwright's browser download is not used"
        )
    return path


@contextlib.asynccontextmanager
async def running_console(config: StovepipeConfig) -> AsyncIterator[str]:
    """A console for ``config`` served in this event loop; yields its base URL."""
    settings = uvicorn_config(config, f"127.0.0.1:{free_port()}")
    server = uvicorn.Server(settings)
    task = asyncio.create_task(server.serve())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not server.started:
            if task.done():
                task.result()
            assert loop.time() < deadline, "console did not start within 30 s"
            await asyncio.sleep(0.02)
        scheme = "https" if settings.is_ssl else "http"
        yield f"{scheme}://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
