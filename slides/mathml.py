"""TeX in markdown ($...$, $$...$$) turned into MathML at build time, so decks need no math script or web font.

Browsers render MathML natively (Chrome/Edge 109+, Firefox, Safari). A formula latex2mathml cannot convert is
kept as TeX in <code class="tex-error"> and reported, so the build and the test can name it.
"""

from __future__ import annotations

import re

from latex2mathml.converter import convert

# $$...$$ or $...$ (both may span lines, as in Jupyter); a backslash-escaped \$ is a dollar sign, not math.
MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$([^$]+?)(?<!\\)\$", re.DOTALL)
CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)
OPERATOR_NAMES = re.compile(r"\\(arg)(?![A-Za-z])")  # standard operators latex2mathml does not know
UNCONVERTED = re.compile(r"<mi>\\[A-Za-z]+</mi>|<mi>&amp;</mi>|<mi>&</mi>")


def tex_to_mathml(tex: str, display: bool) -> str:
    """One formula as a <math> element; raises ValueError when latex2mathml cannot convert it."""
    try:
        tex = OPERATOR_NAMES.sub(r"\\operatorname{\1}", tex.strip())
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises many kinds of errors for bad or unsupported TeX
        raise ValueError(f"cannot convert TeX {tex!r}: {type(err).__name__} {err}") from err
    if UNCONVERTED.search(mathml):
        raise ValueError(f"unsupported TeX command or environment in {tex!r}")
    # Markdown must not read * or _ inside the MathML as emphasis.
    return mathml.replace("*", "&#x2A;").replace("_", "&#x5F;").replace("\n", " ")


def markdown_with_mathml(source: str, errors: list[str] | None = None) -> str:
    """Replace the TeX formulas of a markdown text (outside code) with MathML; failures go to `errors`."""

    def replace(match: re.Match) -> str:
        display = match.group(1) is not None
        tex = match.group(1) if display else match.group(2)
        try:
            return tex_to_mathml(tex, display)
        except ValueError as err:
            if errors is not None:
                errors.append(str(err))
            escaped = tex.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return f'<code class="tex-error">{escaped}</code>'

    parts = CODE.split(source)
    return "".join(part if index % 2 else MATH.sub(replace, part) for index, part in enumerate(parts))
