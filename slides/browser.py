"""Open decks in a real headless Chromium, network disabled, and report slides, load failures and console errors.

    python -m slides.browser [build/slides]    # check every deck of a build, save title-slide screenshots

Chromium is driven through its DevTools protocol over a pipe (--remote-debugging-pipe): no port, no extra
package. Every request that is not a local file is blocked and reported; so are failed loads, console errors,
uncaught exceptions and formulas left as TeX.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--mute-audio", "--hide-scrollbars", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")

READY_JS = "!!(window.Reveal && Reveal.isReady && Reveal.isReady() && document.readyState === 'complete')"
MEASURE_JS = """(() => {
    const overflow = [];
    for (const slide of Reveal.getSlides()) {
        const at = Reveal.getIndices(slide);
        Reveal.slide(at.h, at.v || 0);
        const shown = Reveal.getCurrentSlide();
        if (shown.scrollHeight > shown.clientHeight + 8) {
            overflow.push(`${at.h}.${at.v || 0} (+${shown.scrollHeight - shown.clientHeight}px)`);
        }
    }
    Reveal.configure({transition: "none"});
    Reveal.slide(0, 0);
    return {total: Reveal.getTotalSlides(), horizontal: Reveal.getHorizontalSlides().length, overflow: overflow,
            title: document.title, mathErrors: document.querySelectorAll("code.tex-error, merror").length};
})()"""


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome binary ($COURSE_CHROMIUM first), or None."""
    explicit = os.environ.get("COURSE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    return next((path for path in map(shutil.which, BROWSER_NAMES) if path), None)


@dataclass
class DeckReport:
    """What one deck did in the browser."""

    deck: str
    slides: int = 0
    horizontal: int = 0
    title: str = ""
    overflow: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)     # resources that failed to load or tried the network
    errors: list[str] = field(default_factory=list)     # console errors, exceptions, TeX errors
    screenshot: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No failed resource and no error."""
        return not self.failed and not self.errors


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 720, timeout: float = 30):
        executable = executable or find_chromium()
        if not executable:
            raise FileNotFoundError("No Chromium found: install Debian's `chromium` (see .ci/run) or set "
                                    "COURSE_CHROMIUM to a Chrome/Chromium binary.")
        self.width, self.height, self.timeout = width, height, timeout
        self.profile = tempfile.mkdtemp(prefix="course-slides-chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Chromium reads commands from fd 3 and writes replies to fd 4; move our ends out of the way first.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def wire_pipes() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [executable, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "about:blank"]
        self.log = open(Path(self.profile) / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                        preexec_fn=wire_pipes, close_fds=False)
        os.close(child_in)
        os.close(child_out)
        self._writer = os.fdopen(to_browser_w, "wb", buffering=0)
        self._reader = os.fdopen(from_browser_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._read_loop, daemon=True)
        self._thread.start()
        try:
            self.version = self.send("Browser.getVersion")["product"]
        except (TimeoutError, RuntimeError, OSError) as err:
            self.log.flush()
            tail = (Path(self.profile) / "chromium.log").read_text(errors="replace")[-2000:]
            self.close()
            raise RuntimeError(f"Chromium ({executable}) did not start: {err}\n{tail}") from err

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = self._reader.read(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.pop(message["id"], None)
                    if box is not None:
                        box.put(message)
                else:
                    if message.get("method") == "Fetch.requestPaused":  # block the network now, report later
                        self._post("Fetch.failRequest", {"requestId": message["params"]["requestId"],
                                                         "errorReason": "InternetDisconnected"},
                                   message.get("sessionId"))
                    self.events.append(message)

    def _post(self, method: str, params: dict, session: str | None) -> None:
        """Send a command without waiting for its reply (used from the reader thread)."""
        with self._lock:
            self._next_id += 1
            message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        with self._write_lock:
            self._writer.write(json.dumps(message).encode() + b"\0")

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one DevTools command and return its result (raises on a protocol error)."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            box: queue.Queue = queue.Queue()
            self._replies[ident] = box
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        with self._write_lock:
            self._writer.write(json.dumps(message).encode() + b"\0")
        try:
            reply = box.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {method} in {timeout or self.timeout} s") from None
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def evaluate(self, session: str, expression: str, timeout: float | None = None):
        """Evaluate JavaScript in the page (awaiting a promise) and return its value."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session, timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, session: str, expression: str, timeout: float) -> bool:
        """Poll a JavaScript condition until it is true or the timeout passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.evaluate(session, expression):
                return True
            time.sleep(0.1)
        return False

    def check_deck(self, path: Path, screenshot: Path | None = None) -> DeckReport:
        """Open one deck from disk with the network off; count slides, collect failures, save the title slide."""
        start = time.monotonic()
        report = DeckReport(deck=path.name)
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
                self.send(method, session=session)
            self.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                           "uploadThroughput": -1}, session)
            self.send("Fetch.enable", {"patterns": [{"urlPattern": "http*"}, {"urlPattern": "ws*"}]}, session)
            self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                             "deviceScaleFactor": 1, "mobile": False}, session)
            first_event = len(self.events)
            self.send("Page.navigate", {"url": path.resolve().as_uri()}, session)
            ready = self.wait_for(session, READY_JS, self.timeout)
            if not ready:
                report.errors.append(f"reveal.js not ready after {self.timeout} s")
            else:
                facts = self.evaluate(session, MEASURE_JS)
                report.slides, report.horizontal = facts["total"], facts["horizontal"]
                report.title, report.overflow = facts["title"], facts["overflow"]
                if facts["mathErrors"]:
                    report.errors.append(f"{facts['mathErrors']} formulas left as TeX")
                time.sleep(0.2)
                if screenshot is not None:
                    shot = self.send("Page.captureScreenshot", {"format": "png"}, session)
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                    report.screenshot = str(screenshot)
            time.sleep(0.05)
            self._collect(session, self.events[first_event:], report)
        finally:
            self.send("Target.closeTarget", {"targetId": target})
        report.seconds = round(time.monotonic() - start, 2)
        return report

    def _collect(self, session: str, events: list[dict], report: DeckReport) -> None:
        urls: dict[str, str] = {}
        for event in events:
            if event.get("sessionId") != session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                urls[params["requestId"]] = url
                if not url.startswith(LOCAL_SCHEMES):
                    report.failed.append(f"network request: {url}")
            elif method == "Fetch.requestPaused":
                report.failed.append(f"network request (blocked): {params['request']['url']}")
            elif method == "Network.loadingFailed":
                url = urls.get(params["requestId"], params["requestId"])
                report.failed.append(f"failed to load {url}: {params.get('errorText')}")
            elif method == "Network.responseReceived" and params["response"].get("status", 200) >= 400:
                report.failed.append(f"HTTP {params['response']['status']} for {params['response']['url']}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                report.errors.append(f"exception: {text}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
                report.errors.append(f"console.{params['type']}: {text}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                report.errors.append(f"console ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self._writer, self._reader, self.log):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_build(out: Path) -> list[DeckReport]:
    """Check every deck listed in <out>/decks.json; screenshots go to <out>/screenshots/."""
    manifest = json.loads((out / "decks.json").read_text(encoding="utf-8"))
    with Chromium() as browser:
        return [browser.check_deck(out / row["deck"], out / "screenshots" / (Path(row["deck"]).stem + ".png"))
                for row in manifest]


def main(argv: list[str] | None = None) -> int:
    """Command line: check a build folder and print one line per deck."""
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "build" / "slides"
    reports = check_build(out)
    for report in reports:
        status = "ok" if report.ok else "FAIL"
        print(f"{status:4} {report.deck:<40} {report.slides:>3} slides  {report.seconds:5.1f} s"
              + (f"  overflow: {', '.join(report.overflow)}" if report.overflow else ""))
        for line in report.failed + report.errors:
            print(f"       {line}")
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
