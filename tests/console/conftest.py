"""The console's fixtures: the demo's stack (``stovepipe up``, console included) with its
three commits validated, Debian's headless Chromium driven by Playwright, and extra
console processes in this event loop for the access tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, Playwright, async_playwright

from stovepipe.config import StovepipeConfig
from stovepipe.console.process import uvicorn_config
from stovepipe.runtime.demo import DemoHistory, demo_history
from stovepipe.runtime.embedded import free_port


def chromium_path() -> str:
    """Debian's chromium; a clear failure (never a skip) when it is missing."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: the console's browser tests need Debian's headless "
            "Chromium (apt-get install -y chromium); Playwright's browser download is not used"
        )
    return path


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoHistory]:
    """``stovepipe up`` on the demo repository, its three commits validated."""
    workdir = tmp_path_factory.mktemp("console-demo")
    async with demo_history(workdir, sandbox=shutil.which("bwrap") is not None) as history:
        yield history


@contextlib.asynccontextmanager
async def running_console(config: StovepipeConfig) -> AsyncIterator[str]:
    """A console for ``config`` served in this event loop; yields its base URL."""
    settings = uvicorn_config(config, f"127.0.0.1:{free_port()}")
    server = uvicorn.Server(settings)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
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


def with_console(demo: DemoHistory, section: dict[str, Any]) -> StovepipeConfig:
    """The demo's configuration with this ``console`` section, pointed at its API."""
    from stovepipe.config import config_from_mapping
    from stovepipe.runtime.demo import demo_config

    base = demo_config(demo.repo.path, int(demo.stack.api_address.rsplit(":", 1)[1]))
    data = base.model_dump(mode="json", exclude_none=True)
    data["console"] = section
    return config_from_mapping(data, source="test")
