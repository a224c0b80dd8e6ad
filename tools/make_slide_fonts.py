"""Maintainers: write the fonts the decks bundle (slides/theme/fonts/), subset from Debian's font packages.

    apt-get install fonts-nanum fonts-lmodern fonts-dejavu-core   # the sources (OFL, GUST, Bitstream Vera licenses)
    python tools/make_slide_fonts.py

Nanum Gothic (regular and bold, for text) and Nanum Gothic Coding (for code), renamed "Course Gothic" and "Course
Gothic Coding" as the SIL Open Font License asks of modified versions (the name Nanum is reserved), keep Latin, Greek, punctuation, arrows,
math operators and the 2,350 Hangul syllables of KS X 1001, which cover modern Korean text. Latin Modern Math is
bundled unchanged (only put in a WOFF container): its MATH table places sub- and superscripts where TeX puts them.
"Course Symbols", cut from DejaVu Sans and renamed as its license asks of modified fonts, draws the few symbols
Nanum Gothic lacks (the minus sign, superscript and subscript letters). tests/test_slides.py checks that every
character on the slides is in the bundled fonts, so a new Hangul syllable outside the set fails there by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "slides" / "theme" / "fonts"
NANUM = Path("/usr/share/fonts/truetype/nanum")
LM_MATH = Path("/usr/share/texmf/fonts/opentype/public/lm-math/latinmodern-math.otf")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

TEXT_RANGES = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x2010, 0x205E), (0x2070, 0x209F),
               (0x2100, 0x215F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2300, 0x23FF), (0x2460, 0x24FF),
               (0x2500, 0x25FF), (0x2600, 0x26FF), (0x3000, 0x303F), (0x3131, 0x318E), (0xFF01, 0xFF5E)]


# Characters Nanum Gothic lacks and slides use (the minus sign, super- and subscript letters and digits, arrows
# and math symbols): a fallback "Course Symbols" font after Course Gothic in the CSS, cut from DejaVu Sans.
SYMBOL_RANGES = [(0x00B2, 0x00B3), (0x00B9, 0x00B9), (0x0370, 0x03FF), (0x1D00, 0x1DBF), (0x2010, 0x205E),
                 (0x2070, 0x209F), (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2300, 0x23FF),
                 (0x2500, 0x25FF), (0x27E8, 0x27EB)]


def ks_x_1001_hangul() -> list[int]:
    """The 2,350 precomposed Hangul syllables of KS X 1001 (EUC-KR rows 0xB0-0xC8)."""
    found = []
    for high in range(0xB0, 0xC9):
        for low in range(0xA1, 0xFF):
            try:
                found.append(ord(bytes([high, low]).decode("euc-kr")))
            except UnicodeDecodeError:
                continue
    return found


def text_codepoints() -> list[int]:
    """Every code point the text fonts keep."""
    points = [cp for start, end in TEXT_RANGES for cp in range(start, end + 1)]
    return sorted(set(points + ks_x_1001_hangul()))


def rename(font: TTFont, family: str, style: str) -> None:
    """Give a subset its own family name: the OFL reserves the name "Nanum" for the unmodified fonts."""
    full = family if style == "Regular" else f"{family} {style}"
    names = {1: family, 2: style, 3: f"{full}; subset for PEFT from scratch", 4: full, 6: full.replace(" ", "-"),
             16: family, 17: style}
    table = font["name"]
    table.names = [record for record in table.names if record.nameID not in names]
    for name_id, value in names.items():
        table.setName(value, name_id, 3, 1, 0x409)


def write_subset(source: Path, target: Path, unicodes: list[int], family: str, style: str) -> None:
    """Subset one font, rename it and save it as WOFF."""
    options = subset.Options()
    options.flavor = "woff"
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False  # projectors and screens scale the slides; hints only add size
    font = TTFont(source, recalcTimestamp=False)  # the same bytes on every run
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=unicodes)
    subsetter.subset(font)
    rename(font, family, style)
    font.flavor = "woff"
    font.save(target)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size / 1024:.0f} KiB, {len(font.getBestCmap())} characters")


def wrap(source: Path, target: Path) -> None:
    """Save a font unchanged (every table, every glyph) as WOFF: a container change, not a modification."""
    font = TTFont(source, recalcTimestamp=False)  # the same bytes on every run
    font.flavor = "woff"
    font.save(target)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size / 1024:.0f} KiB, {len(font.getBestCmap())} characters")


def main() -> int:
    """Write the five bundled fonts."""
    missing = [path for path in (NANUM / "NanumGothic.ttf", LM_MATH, DEJAVU) if not path.is_file()]
    if missing:
        print(f"missing {missing}: apt-get install fonts-nanum fonts-lmodern fonts-dejavu-core", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    points = text_codepoints()
    for stale in OUT.glob("*.woff"):
        stale.unlink()
    write_subset(NANUM / "NanumGothic.ttf", OUT / "CourseGothic-Regular.woff", points, "Course Gothic", "Regular")
    write_subset(NANUM / "NanumGothicBold.ttf", OUT / "CourseGothic-Bold.woff", points, "Course Gothic", "Bold")
    write_subset(NANUM / "NanumGothicCoding.ttf", OUT / "CourseGothicCoding-Regular.woff", points,
                 "Course Gothic Coding", "Regular")
    symbols = [cp for start, end in SYMBOL_RANGES for cp in range(start, end + 1)]
    write_subset(DEJAVU, OUT / "CourseSymbols-Regular.woff", symbols, "Course Symbols", "Regular")
    wrap(LM_MATH, OUT / "latinmodern-math.woff")
    return 0


if __name__ == "__main__":
    sys.exit(main())
