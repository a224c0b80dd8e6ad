"""Open every deck in headless Chromium with the network off, step through it with the → key as a presenter would,
and check each slide: a title, nothing cut off or spilling over, figures drawn large enough to read, no error or
TODO output, every slide reached. Playwright drives the system's Chromium (no browser download).

    python -m slides.browser build/slides [--only NAME ...] [--screenshots all|title|none]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from slides.figures import NOTEBOOK_TEXT_PX

WIDTH, HEIGHT = 1280, 720
EDGE_PX = 16             # content must stay this far inside the slide's edges
FIGURE_MIN_PT = 16.0     # figure text on the 1280x720 slide, readable from the back of a room
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
BLOCKED = ("http://", "https://", "ws://", "wss://")

# Runs in the page on the current slide: what a presenter would see wrong with it.
SLIDE_CHECK = """async ([width, height, edge, basePx, minPt]) => {
  await document.fonts.ready;  // measure with the bundled fonts, never a fallback that is still being replaced
  const slide = Reveal.getCurrentSlide();
  const box = slide.getBoundingClientRect();
  const problems = [];
  const say = (el) => (el.innerText || el.alt || el.tagName).trim().replace(/\\s+/g, " ").slice(0, 60);
  const title = slide.querySelector("h1.slide-title, h2.slide-title");
  const titleText = title ? title.innerText.trim() : "";
  if (!titleText) problems.push("no title");
  const frame = slide.querySelector(".frame") || slide;
  const body = [...frame.querySelectorAll(".slide-text, .slide-visual, .subtitle, .deck-source")];
  const shows = body.some((el) => el.innerText.trim() || el.querySelector("img, table, math, svg"));
  if (!shows) problems.push("empty: nothing on the slide but its title");
  const text = frame.innerText;
  const unfinished = [[/\\bTODO\\b/, "TODO"], [/Traceback \\(most recent call last\\)/, "a traceback"],
                      [/NotImplementedError/, "NotImplementedError"]];
  for (const [pattern, what] of unfinished) {
    if (pattern.test(text)) problems.push(`shows ${what}`);
  }
  if (frame.querySelector("code.tex-error")) problems.push("a formula left as TeX");
  const seen = new Set();
  for (const el of frame.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const out = [];
    if (r.bottom > box.top + height - edge + 0.5) out.push(`spills ${Math.round(r.bottom - box.top - height + edge)}px below`);
    if (r.right > box.left + width - edge + 0.5) out.push(`spills ${Math.round(r.right - box.left - width + edge)}px right`);
    if (r.left < box.left + edge - 0.5) out.push(`starts ${Math.round(box.left + edge - r.left)}px left of the edge`);
    if (style.overflowX !== "visible" && el.scrollWidth > el.clientWidth + 1) out.push(`clipped: ${el.scrollWidth - el.clientWidth}px cut at the right`);
    if (style.overflowY !== "visible" && el.scrollHeight > el.clientHeight + 1) out.push(`clipped: ${el.scrollHeight - el.clientHeight}px cut at the bottom`);
    for (const what of out) {
      const line = `${what}: <${el.tagName.toLowerCase()}> "${say(el)}"`;
      if (!seen.has(what)) { seen.add(what); problems.push(line); }
    }
  }
  const figures = [];
  for (const img of frame.querySelectorAll("img.slide-figure")) {
    if (!img.complete || !img.naturalWidth) { problems.push("a figure did not load"); continue; }
    const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
    const pt = parseFloat(img.dataset.textPx || basePx) * scale * 0.75;
    figures.push(Math.round(pt * 10) / 10);
    if (pt < minPt - 0.05) problems.push(`figure text at ${pt.toFixed(1)} pt (at least ${minPt}); give the figure the slide or cut out one panel`);
  }
  return {title: titleText, problems, figures, notes: !!slide.querySelector("aside.notes"),
          indices: Reveal.getIndices()};
}"""


# The bundled fonts: each element kind asks for its font first, and that font's file loads (a missing or broken
# file, or a style sheet that falls back to a system font, is reported).
FONT_CHECK = """async () => {
  const errors = [];
  for (const [selector, family, sample] of [[".slide-title", "Course Gothic", "한A"], ["math", "Latin Modern Math", "x"],
                                            ["pre", "Course Gothic Coding", "x"]]) {
    const element = document.querySelector(selector);
    if (!element) continue;
    const first = getComputedStyle(element).fontFamily.split(",")[0].replace(/["']/g, "").trim();
    if (first !== family) errors.push(`${selector} is set in ${first}, not the bundled ${family}`);
    const faces = await document.fonts.load(`30px "${family}"`, sample);
    if (!faces.length) errors.push(`the bundled font ${family} did not load`);
  }
  return errors;
}"""


def find_chromium() -> str | None:
    """A Chromium or Chrome binary: $COURSE_CHROMIUM, else the first on PATH."""
    if os.environ.get("COURSE_CHROMIUM"):
        return os.environ["COURSE_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class DeckReport:
    """What opening one deck and stepping through it found."""

    deck: str
    total: int = 0
    slides: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # console errors and uncaught exceptions
    failed: list[str] = field(default_factory=list)      # resources that did not load (or were blocked)
    unreached: list[int] = field(default_factory=list)   # slides → never showed

    @property
    def problems(self) -> list[str]:
        """Every problem, one line each, naming the slide."""
        lines = [f"slide {n + 1} ({s['title'][:50]!r}): {p}" for n, s in enumerate(self.slides) for p in s["problems"]]
        lines += [f"console: {e}" for e in self.errors] + [f"not loaded: {f}" for f in self.failed]
        lines += [f"slide {n + 1} cannot be reached with →" for n in self.unreached]
        return lines

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems and self.total > 0


class Browser:
    """One headless Chromium (Playwright) for many decks; use as a context manager."""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise RuntimeError("no Chromium found: install Debian's `chromium` or set COURSE_CHROMIUM")

    def __enter__(self) -> "Browser":
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=self.executable, args=CHROMIUM_FLAGS)
        return self

    def __exit__(self, *exc: object) -> None:
        self._browser.close()
        self._playwright.stop()

    def check_deck(self, path: Path, screenshots: Path | None = None, every_slide: bool = False) -> DeckReport:
        """Open a deck from disk, press → until the last slide, check every slide; save screenshots."""
        report = DeckReport(path.name)
        context = self._browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
        page = context.new_page()

        def route(route) -> None:
            if route.request.url.startswith(BLOCKED):
                report.failed.append(f"{route.request.url} (network request blocked)")
                route.abort()
            else:
                route.continue_()

        page.route("**/*", route)
        page.on("console", lambda msg: report.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: report.errors.append(f"uncaught {err}"))
        page.on("requestfailed", lambda req: None if req.url.startswith(BLOCKED) else
                report.failed.append(f"{req.url} ({req.failure})"))
        try:
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=15000)
            # Load every bundled font before measuring: a font that arrives after a slide was measured would
            # change its text widths (a slide measured with a fallback font can pass or fail by chance).
            page.evaluate("() => Promise.all([...document.fonts].map((face) => face.load()))")
            page.evaluate("() => Reveal.configure({transition: 'none', backgroundTransition: 'none'})")
            report.total = page.evaluate("() => Reveal.getTotalSlides()")
            seen = set()
            for step in range(report.total):
                info = page.evaluate(SLIDE_CHECK, [WIDTH, HEIGHT, EDGE_PX, NOTEBOOK_TEXT_PX, FIGURE_MIN_PT])
                index = info["indices"]["h"]
                if index in seen:
                    break
                seen.add(index)
                report.slides.append(info)
                if screenshots is not None and (every_slide or step == 0):
                    screenshots.mkdir(parents=True, exist_ok=True)
                    name = path.stem + ("" if not every_slide else f"-{step + 1:02d}") + ".png"
                    page.screenshot(path=str(screenshots / name))
                page.keyboard.press("ArrowRight")
            report.unreached = [n for n in range(report.total) if n not in seen]
            report.errors += page.evaluate(FONT_CHECK)
        finally:
            context.close()
        return report


    def speaker_notes(self, path: Path, slide: int) -> str:
        """Open a deck at slide `slide` (0-based), press S as a presenter would, and return the notes the speaker
        view shows (reveal's notes plugin opens it as a second window)."""
        context = self._browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        try:
            page = context.new_page()
            page.goto(f"{path.resolve().as_uri()}#/{slide}", wait_until="load")
            page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=15000)
            with context.expect_page(timeout=15000) as opened:
                page.keyboard.press("s")
            view = opened.value
            view.wait_for_load_state()
            view.wait_for_function("() => (document.querySelector('.speaker-controls-notes .value') || {}).innerText",
                                   timeout=15000)
            return view.evaluate("() => document.querySelector('.speaker-controls-notes .value').innerText")
        finally:
            context.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: check every deck of a build folder; exit 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the build folder (build/slides)")
    parser.add_argument("--only", nargs="*", default=[], help="only decks whose name contains one of these")
    parser.add_argument("--screenshots", choices=("all", "title", "none"), default="title",
                        help="save every slide, each deck's title slide, or nothing, in <folder>/screenshots/")
    args = parser.parse_args(argv)
    decks = [row["deck"] for row in json.loads((args.folder / "decks.json").read_text(encoding="utf-8"))]
    decks = [deck for deck in decks if not args.only or any(name in deck for name in args.only)]
    shots = None if args.screenshots == "none" else args.folder / "screenshots"
    bad = 0
    with Browser() as browser:
        for deck in decks:
            report = browser.check_deck(args.folder / deck, shots, every_slide=args.screenshots == "all")
            sizes = [pt for slide in report.slides for pt in slide["figures"]]
            smallest = f", smallest figure text {min(sizes):.1f} pt" if sizes else ""
            notes = sum(slide["notes"] for slide in report.slides)
            print(f"{deck:<40} {len(report.slides):>3}/{report.total} slides reached, {notes} with notes{smallest}"
                  f" — {'ok' if report.ok else 'PROBLEMS'}")
            for line in report.problems:
                print(f"    {line}")
            bad += not report.ok
    print(f"{len(decks) - bad} of {len(decks)} decks without problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
