"""Regenerate the README's console screenshot: ``python scripts/console_screenshot.py``.

Runs ``stovepipe up`` on the demo's sample repository, validates its three
commits, opens the Queue grid in Debian's headless Chromium (Playwright,
``executable_path``: no browser is downloaded) and writes doc/console.png.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from stovepipe.runtime.demo import QUEUE, demo_history

OUT = Path(__file__).resolve().parent.parent / "doc" / "console.png"


async def main(out: Path) -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 1
    sandbox = shutil.which("bwrap") is not None
    with tempfile.TemporaryDirectory(prefix="stovepipe-shot-") as tmp:
        async with demo_history(Path(tmp), sandbox=sandbox) as demo, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True)
            page = await browser.new_page(viewport={"width": 1100, "height": 520})
            await page.goto(f"{demo.stack.console_url}/queues/{QUEUE}")
            await page.wait_for_selector("body[data-live='on']")
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)))
