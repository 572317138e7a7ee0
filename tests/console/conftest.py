"""The console's fixtures: the demo's stack (``stovepipe up``, console included) with its
three commits validated, and Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Playwright, async_playwright

from harness.console import chromium_path
from stovepipe.runtime.demo import DemoHistory, demo_history


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
