"""The console in a real browser: Debian's headless Chromium, driven by Playwright, on the
demo's stack as ``stovepipe up`` runs it (the console is one of its children)."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect
from rich.console import Console

from stovepipe.runtime.demo import QUEUE, DemoHistory
from stovepipe.runtime.sample_repo import Step

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# The cell colours of console.css, as the browser computes them.
COLOURS = {"green": "rgb(26, 127, 55)", "broken": "rgb(207, 34, 46)"}
WAIT_MS = 60_000
# With the showcase's two projects of equal weight, "break add()" breaks calc and leaves
# docs green (inherited): the whole repository is half broken.
LABELS = {"green": "green", "broken": "broken (0.5)"}


async def _open_grid(browser: Browser, demo: DemoHistory) -> Page:
    page = await browser.new_page(viewport={"width": 1100, "height": 700})
    await page.goto(f"{demo.stack.console_url}/queues/{QUEUE}")
    return page


async def test_stovepipe_up_starts_the_console_and_shows_its_address(demo: DemoHistory) -> None:
    out = io.StringIO()
    Console(file=out, width=300).print(demo.stack.table())
    console_rows = [line for line in out.getvalue().splitlines() if " console " in line]
    assert len(console_rows) == 1
    assert demo.stack.console_url in console_rows[0]


async def test_the_demo_commits_render_with_their_colours(
    demo: DemoHistory, browser: Browser, tmp_path: Path
) -> None:
    page = await _open_grid(browser, demo)
    first_three = demo.rows[:3]
    assert [r.expect_green for r in first_three] == [True, False, True]
    for row in first_three:
        state = "green" if row.expect_green else "broken"
        cell = page.locator(f"tr[data-uri$='{row.sha}'] a.cell[data-project='']")
        assert await cell.get_attribute("data-state") == state
        assert (await cell.inner_text()).strip() == LABELS[state]
        # retried: a live refresh may swap the table between finding a cell and reading it
        await expect(cell).to_have_css("background-color", COLOURS[state])
    # the last green commit carries the bookmark and the promotion ref, and only it does
    newest_green = first_three[2].sha
    marked = page.locator("tr.marked")
    assert await marked.count() == 1
    assert (await marked.get_attribute("data-uri") or "").endswith(newest_green)
    marks = await marked.locator(".mark").all_inner_texts()
    assert marks == ["last green", "promotes verified-main"]
    shot = tmp_path / "console-grid.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    print(f"screenshot: {shot}")

    # the Queues page: coloured state, last green short id
    await page.goto(demo.stack.console_url + "/")
    queue_row = page.locator(f"tr[data-queue='{QUEUE}']")
    assert await queue_row.locator(".badge").inner_text() == "green"
    assert newest_green[:10] in await queue_row.inner_text()
    await page.close()


async def test_a_verdict_recorded_while_the_page_is_open_appears_without_a_reload(
    demo: DemoHistory, browser: Browser
) -> None:
    page = await _open_grid(browser, demo)
    await page.wait_for_selector("body[data-live='on']", timeout=WAIT_MS)
    # Marks that a reload would wipe, and first-seen times of every row, in page time.
    await page.evaluate(
        """() => {
          window.__sameDocument = true;
          window.__seen = {};
          const note = () => document.querySelectorAll('tr[data-uri]').forEach(tr => {
            const uri = tr.getAttribute('data-uri');
            const state = tr.querySelector('a.cell[data-project=""]').getAttribute('data-state');
            if (!(uri in window.__seen) && (state === 'green' || state === 'broken')) {
              window.__seen[uri] = Date.now();
            }
          });
          note();
          new MutationObserver(note).observe(document.body, {subtree: true, childList: true});
        }"""
    )
    navigations = await page.evaluate("performance.getEntriesByType('navigation').length")
    step = Step(
        "break add() once more", {"src/calc.py": "def add(a, b):\n    return a * b\n"}, False
    )
    row = await demo.validate(step)
    assert row.greenness is not None
    recorded = row.greenness.fact.created_at.ToDatetime(tzinfo=UTC)
    cell = page.locator(f"tr[data-uri$='{row.sha}'] a.cell[data-project='']")
    # the row may show first as waiting or running; the verdict's own event brings it
    await expect(cell).to_have_attribute("data-state", "broken", timeout=WAIT_MS)
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == navigations
    seen_ms = await page.evaluate(f"window.__seen[{row.greenness.fact.uri!r}]")
    shown = datetime.fromtimestamp(seen_ms / 1000, UTC)
    print(f"verdict recorded -> shown in the open page: {(shown - recorded).total_seconds():.3f} s")
    await page.close()


_ACCESSIBLE_NAME_CHECKS = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push('html has no lang');
  document.querySelectorAll('a, button').forEach(e => {
    const name = (e.getAttribute('aria-label') || e.textContent || '').trim();
    if (!name) problems.push('unnamed ' + e.outerHTML.slice(0, 80));
  });
  document.querySelectorAll('table').forEach(t => {
    if (!t.querySelector('caption')) problems.push('table without caption');
  });
  document.querySelectorAll('thead th').forEach(th => {
    if (th.getAttribute('scope') !== 'col') problems.push('header without scope');
  });
  document.querySelectorAll('input:not([type=hidden])').forEach(i => {
    if (!(i.labels && i.labels.length)) problems.push('input without label ' + i.name);
  });
  return problems;
}"""


async def _accessibility_problems(page: Page) -> list[str]:
    results = await Axe().run(page)
    problems: list[str] = await page.evaluate(_ACCESSIBLE_NAME_CHECKS)
    if results.violations_count:
        problems.append(results.generate_report())
    return problems


async def test_keyboard_navigation_and_accessible_names(
    demo: DemoHistory, browser: Browser
) -> None:
    page = await _open_grid(browser, demo)
    assert await _accessibility_problems(page) == []
    # the first Tab reaches the skip link, Enter moves focus to the content
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    # Tab on to the first commit's whole-repo cell; its accessible name says what it shows
    broken = demo.rows[1].sha
    target = f"{broken[:10]} whole repo: {LABELS['broken']}"
    for _ in range(60):
        await page.keyboard.press("Tab")
        name = await page.evaluate("document.activeElement.getAttribute('aria-label')")
        if name == target:
            break
    else:
        pytest.fail(f"Tab never reached the cell named {target!r}")
    link = page.get_by_role("link", name=target)
    assert await link.count() == 1
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/commit\?"), timeout=WAIT_MS)
    assert await page.locator("#verdict").inner_text() == "broken"
    assert broken[:10] in await page.locator("h1").inner_text()
    assert "request/demo/main/2" in await page.locator("dl.request").inner_text()
    assert await _accessibility_problems(page) == []
    await page.goto(demo.stack.console_url + "/")
    assert await _accessibility_problems(page) == []
    await page.close()


_LEAKY_TEST = (
    "import sys\n"
    "print('cloning https://ci-bot:hunter2-secret@git.example.com/calc.git')\n"
    "print('token=hunter2-secret')\n"
    "print('calc tests failed on purpose')\n"
    "sys.exit(1)\n"
)


async def _reload_until(page: Page, selector: str) -> None:
    """Reload until ``selector`` is on the page (a hook delivery is made after the verdict);
    each reload waits for the page, there is no fixed pause."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_MS / 1000
    while await page.locator(selector).count() == 0:
        assert loop.time() < deadline, f"{selector} never appeared"
        await page.reload()


async def test_project_columns_titles_transitions_target_logs_and_hook_deliveries(
    demo: DemoHistory, browser: Browser
) -> None:
    """The showcase Queue has projects calc and docs and a log hook; one more commit
    fails its unit tests while printing credentials."""
    row = await demo.validate(
        Step("leak a credential in a failing test", {"tests/test_calc.py": _LEAKY_TEST}, False)
    )
    page = await _open_grid(browser, demo)
    headers = await page.locator("thead th[data-column]").all_inner_texts()
    assert headers == ["whole repo", "calc", "docs"]
    first, broken = demo.rows[0], demo.rows[1]

    async def cell(sha: str, project: str) -> tuple[str | None, str]:
        link = page.locator(f"tr[data-uri$='{sha}'] a.cell[data-project='{project}']")
        return await link.get_attribute("data-state"), (await link.inner_text()).strip()

    # the first commit built both projects; "break add()" touched only calc's paths, so
    # docs carries its last green verdict forward
    assert await cell(first.sha, "calc") == ("green", "green")
    assert await cell(first.sha, "docs") == ("green", "green")
    assert await cell(broken.sha, "calc") == ("broken", "broken")
    assert await cell(broken.sha, "docs") == ("green", "green (inherited)")
    assert await cell(row.sha, "calc") == ("broken", "broken")
    title = page.locator(f"tr[data-uri$='{broken.sha}'] td.title")
    assert await title.inner_text() == "break add()"
    assert await page.locator("tr.marked .mark").all_inner_texts() == [
        "last green",
        "promotes verified-main",
    ]

    # the commit page: transitions with times, the failed target's log (masked), trigger,
    # and the log hook's deliveries of its verdict events
    await page.locator(f"tr[data-uri$='{row.sha}'] a.cell[data-project='']").click()
    await page.wait_for_url(re.compile(r"/commit\?"), timeout=WAIT_MS)
    assert await page.locator("#commit-title").inner_text() == row.title
    states = await page.locator("table.transitions tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.state, r.cells[0].textContent.trim()])"
    )
    # the demo configures projects: the Request waits in "analyzing" for their facts
    assert [s for s, _ in states] == ["accepted", "processing", "analyzing", "failed"]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", at) for _, at in states)
    trigger = await page.locator("table.trigger").inner_text()
    assert "demo" in trigger
    log = page.locator("article[data-target='unit-tests'] pre.log")
    text = await log.inner_text()
    assert "calc tests failed on purpose" in text
    assert "hunter2-secret" not in await page.content()
    assert "https://***@git.example.com" in text and "token=***" in text
    assert await page.locator("article[data-target='docs']").count() == 0  # it passed
    await _reload_until(page, "#deliveries tr[data-hook='audit-log'][data-state='delivered']")
    kinds = await page.locator(
        "#deliveries tr[data-hook='audit-log'] td:nth-child(2)"
    ).all_inner_texts()
    assert "dev.stovepipe.verdict.recorded" in kinds
    assert await _accessibility_problems(page) == []

    # the Queues page names the last green commit by its title
    await page.goto(demo.stack.console_url + "/")
    queue_row = page.locator(f"tr[data-queue='{QUEUE}']")
    assert await queue_row.locator("td.title").inner_text() == demo.rows[2].title
    await page.close()
