"""Open the published asv dashboard and the docs site in headless Chromium with the network blocked.

Both folders are served on 127.0.0.1 (one ``http.server`` thread each). Chromium comes from the system
packages (``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH, or ``--chromium``); a missing
browser is an error that says so. The script drives it over the DevTools protocol and intercepts every
request: one to the local servers goes on, any other is failed on the spot and counted, so nothing leaves the
machine. A page fails the check on

* a JavaScript exception or a ``console.error``,
* a request that failed or was blocked, or a response with status >= 400,
* on the dashboard: asv's "failed to load" banner, an empty benchmark grid, or a graph page whose plot has no
  point (or fewer than ``--min-points``),
* on the docs: no MathJax output, or a raw ``\\(`` / ``\\[`` left in the rendered text.

Pages: the dashboard's index, one graph per benchmark family (module of ``benchmarks/``: the benchmark with
the longest history in the published graphs) and three docs pages. A PNG of each goes to ``--out``
(``reports/dashboard/``), with ``check.json`` listing what each page showed. Exit status 0 only if every page
passed.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import websocket

from scale.cli import Command, option

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DOCS_PAGES = ("index.html", "second_order/index.html", "benchmarks_over_time/index.html")


class CheckError(RuntimeError):
    """The check cannot run (no browser, nothing published) — distinct from a page that fails."""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) from a daemon thread; returns the server and its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def find_chromium(explicit: str | None) -> str:
    candidates = (explicit,) if explicit else BROWSERS
    for name in candidates:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise CheckError(f"no Chromium found (looked for {', '.join(candidates)}); install it with the system "
                     "package manager, e.g. `apt-get install -y chromium`")


class Browser:
    """A headless Chromium and one page (a DevTools session) with every non-local request blocked."""

    def __init__(self, executable: str, allowed_prefixes: tuple[str, ...], width: int, height: int):
        self.allowed = allowed_prefixes
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.proc = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = websocket.create_connection(self._devtools_url(), timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def _devtools_url(self) -> str:
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckError(f"Chromium exited at start with status {self.proc.returncode}")
            if port_file.is_file():
                lines = port_file.read_text().split()
                if len(lines) >= 2:
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.1)
        raise CheckError("Chromium did not open its DevTools port within 30 s")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        msg: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._receive(timeout=60)
            if reply is None:
                raise CheckError(f"no answer from Chromium to {method}")
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise CheckError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """One message; events are handled (requests let through or blocked) and kept for the page report."""
        self.ws.settimeout(timeout)
        try:
            msg = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        if msg.get("method") == "Fetch.requestPaused":
            req = msg["params"]
            url = req["request"]["url"]
            if url.startswith(self.allowed):
                self._send_async("Fetch.continueRequest", {"requestId": req["requestId"]})
            else:
                self.events.append({"method": "blocked", "params": {"url": url}})
                self._send_async("Fetch.failRequest", {"requestId": req["requestId"],
                                                       "errorReason": "BlockedByClient"})
        elif "method" in msg:
            self.events.append(msg)
        return msg

    def _send_async(self, method: str, params: dict[str, Any]) -> None:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params,
                                 "sessionId": self.session}))
        # the reply to this id is read (and dropped) by whichever loop receives next

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(timeout=min(left, 0.2))

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": await_promise}, session=True)
        if "exceptionDetails" in res:
            raise CheckError(f"evaluating {expression[:60]!r}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """Poll ``expression`` until it is truthy (events keep flowing meanwhile); its last value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            self.pump(0.25)
        return value

    def open(self, url: str, timeout: float) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("document.readyState === 'complete'", timeout)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """The page's JavaScript errors and failed or blocked requests since it was opened."""
        out = []
        for ev in self.events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "blocked":
                out.append(f"blocked request to {p['url']}")
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"JavaScript exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in p.get("args", [])))
            elif method == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"failed request: {p.get('errorText')}")
            elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
                out.append(f"HTTP {p['response']['status']} for {p['response']['url']}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"browser log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        return list(dict.fromkeys(out))


def graph_points(graphs_dir: Path) -> dict[str, int]:
    """Benchmark name -> the most non-null points one of its published graph files holds."""
    best: dict[str, int] = {}
    for path in graphs_dir.rglob("*.json"):
        name = path.stem
        try:
            series = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue

        def count(point: Any) -> bool:
            value = point[1] if isinstance(point, list) and len(point) > 1 else None
            if isinstance(value, list):
                return any(v is not None for v in value)
            return value is not None

        n = sum(1 for point in series if count(point))
        best[name] = max(best.get(name, 0), n)
    return best


def pick_graphs(html_dir: Path) -> dict[str, tuple[str, int]]:
    """Family (benchmark module) -> (the benchmark with the longest published history, its point count);
    ``track_*`` benchmarks are preferred over ``time_*`` and ``peakmem_*`` ones at equal length."""
    index = json.loads((html_dir / "index.json").read_text(encoding="utf-8"))
    points = graph_points(html_dir / "graphs")
    chosen: dict[str, tuple[str, int]] = {}
    for name in sorted(index["benchmarks"]):
        family = name.split(".", 1)[0]
        key = (points.get(name, 0), ".track_" in name)
        current = chosen.get(family)
        if current is None or key > (current[1], ".track_" in current[0]):
            chosen[family] = (name, points.get(name, 0))
    return chosen


@dataclass
class PageResult:
    kind: str
    url: str
    screenshot: str
    problems: list[str] = field(default_factory=list)
    shown: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dashboard(browser: Browser, base: str, html_dir: Path, out: Path, cfg: Config) -> list[PageResult]:
    results = []
    page = PageResult("dashboard index", base + "index.html", str(out / "dashboard-index.png"))
    browser.open(page.url, cfg.timeout)
    cells = browser.wait_for("document.querySelectorAll('.benchmark-container, #summarygrid-display a').length",
                             cfg.timeout) or 0
    page.shown["benchmark links"] = cells
    page.problems = browser.problems()
    if browser.evaluate("document.body.innerText.includes('failed to load')"):
        page.problems.append("asv's banner: external dependencies failed to load")
    if not cells:
        page.problems.append("the benchmark grid is empty")
    browser.screenshot(Path(page.screenshot))
    results.append(page)

    for k, (family, (name, published)) in enumerate(pick_graphs(html_dir).items()):
        # a query of its own per graph makes each one a fresh document: a mere change of the #fragment would
        # keep the previous graph's plot on the page until the new one is drawn (asv ignores the query)
        page = PageResult(f"graph of {family}", f"{base}index.html?graph={k}#{name}",
                          str(out / f"graph-{family}.png"))
        browser.open(page.url, cfg.timeout)
        expr = ("(function(){var el=window.jQuery && jQuery('#main-graph'); var p=el && el.data('plot');"
                " if(!p) return null; return p.getData().map(function(s){"
                " return s.data.filter(function(d){return d && d[1]!==null && !isNaN(d[1]);}).length;});})()")
        # a benchmark with no published point cannot draw one: a short wait shows what the page does instead
        counts = browser.wait_for(expr, cfg.timeout if published else 5.0) or []
        browser.pump(1.0)  # let the overview plot and late requests settle before judging the page
        page.shown = {"benchmark": name, "points per series": counts, "points in published graphs": published}
        page.problems = browser.problems()
        if not counts or max(counts) < cfg.min_points:
            page.problems.append(f"graph has {max(counts) if counts else 0} points (at least {cfg.min_points} "
                                 "required)")
        elif max(counts) != published:  # the page drew some other graph, or lost points on the way
            page.problems.append(f"the page draws {max(counts)} points in its longest series, the published "
                                 f"graphs of {name} hold {published}")
        browser.screenshot(Path(page.screenshot))
        results.append(page)
    return results


def check_docs(browser: Browser, base: str, out: Path, cfg: Config) -> list[PageResult]:
    results = []
    for rel in DOCS_PAGES:
        stem = rel.split("/")[0].removesuffix(".html")
        page = PageResult(f"docs {rel}", base + rel, str(out / f"docs-{stem}.png"))
        browser.open(page.url, cfg.timeout)
        arithmatex = browser.evaluate("document.querySelectorAll('.arithmatex').length")
        loaded = browser.wait_for("!!(window.MathJax && MathJax.startup && MathJax.startup.promise)",
                                  cfg.timeout)
        math = browser.evaluate("MathJax.startup.promise.then(function(){"
                                "return document.querySelectorAll('mjx-container').length;})",
                                await_promise=True) if loaded else 0
        browser.pump(0.5)
        # text outside code (where a literal \( is documentation, not math) and outside typeset output
        raw = browser.evaluate("(function(){var b=document.body.cloneNode(true);"
                               "b.querySelectorAll('code,pre,mjx-container,script,style,noscript').forEach(function(e){e.remove();});"
                               "var t=b.textContent;return (t.match(/\\\\\\(|\\\\\\[/g)||[]).length;})()")
        page.shown = {"formulas (arithmatex spans)": arithmatex, "typeset by MathJax": math, "raw \\( or \\[": raw}
        page.problems = browser.problems()
        if arithmatex and not math:
            page.problems.append(f"{arithmatex} formulas, none typeset by MathJax")
        if raw:
            page.problems.append(f"{raw} raw \\( or \\[ in the rendered text")
        browser.screenshot(Path(page.screenshot))
        results.append(page)
    return results


@dataclass
class Config:
    html_dir: Path = option(Path(".asv/html"), "the published asv dashboard (`make dashboard`)")
    site_dir: Path = option(Path("site"), "the built docs site (`make docs`)")
    out: Path = option(Path("reports/dashboard"), "folder for the screenshots and check.json")
    chromium: str | None = option(None, "the browser executable (default: the first of chromium, "
                                        "chromium-browser, google-chrome on PATH)")
    min_points: int = option(1, "a graph page fails with fewer points than this in its longest series")
    timeout: float = option(60.0, "seconds a page may take to load and draw")
    width: int = option(1280, "viewport width in pixels")
    height: int = option(900, "viewport height in pixels")


def run(cfg: Config) -> int:
    for folder, target in ((cfg.html_dir / "index.html", "make dashboard"), (cfg.site_dir / "index.html",
                                                                              "make docs")):
        if not folder.is_file():
            raise ValueError(f"{folder} does not exist: run `{target}` first")
    if cfg.min_points < 1 or cfg.timeout <= 0:
        raise ValueError("--min-points must be >= 1 and --timeout > 0")
    try:
        executable = find_chromium(cfg.chromium)
    except CheckError as exc:
        raise ValueError(str(exc)) from None
    cfg.out.mkdir(parents=True, exist_ok=True)
    for stale in cfg.out.glob("*.png"):  # screenshots of an earlier check must not pass for this one's
        stale.unlink()
    dash_server, dash_base = serve(cfg.html_dir)
    docs_server, docs_base = serve(cfg.site_dir)
    browser = Browser(executable, (dash_base, docs_base), cfg.width, cfg.height)
    try:
        results = check_dashboard(browser, dash_base, cfg.html_dir, cfg.out, cfg)
        results += check_docs(browser, docs_base, cfg.out, cfg)
    finally:
        browser.close()
        dash_server.shutdown()
        docs_server.shutdown()
    report = [{"page": r.kind, "url": r.url, "screenshot": r.screenshot, "ok": r.ok, "shown": r.shown,
               "problems": r.problems} for r in results]
    (cfg.out / "check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.kind}: {json.dumps(r.shown)}")
        for problem in r.problems:
            print(f"       {problem}")
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed}/{len(results)} pages passed; screenshots in {cfg.out}/")
    return 1 if failed else 0


COMMAND = Command(
    prog="dashboard_check",
    description="Serve the published asv dashboard and the docs site on 127.0.0.1 and open them in headless "
                "Chromium with every other request blocked: JavaScript errors, failed requests, empty graphs "
                "and untypeset formulas fail the check. Screenshots go to --out.",
    config=Config,
    run=run,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
