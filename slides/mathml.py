"""TeX in markdown ($...$, $$...$$) turned into MathML at build time, so decks need no math script or web font.

Browsers render MathML natively (Chrome/Edge 109+, Firefox, Safari). A formula latex2mathml cannot convert is
kept as TeX in <code class="tex-error"> and reported, so the build and the test can name it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert

# $$...$$ or $...$ (both may span lines, as in Jupyter); a backslash-escaped \$ is a dollar sign, not math.
MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$([^$]+?)(?<!\\)\$", re.DOTALL)
CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)
OPERATOR_NAMES = re.compile(r"\\(arg)(?![A-Za-z])")  # standard operators latex2mathml does not know
UNCONVERTED = re.compile(r"<mi>\\[A-Za-z]+</mi>|<mi>&amp;</mi>|<mi>&</mi>")
MATHML = "http://www.w3.org/1998/Math/MathML"
PRIMES = set("\u2032\u2033\u2034")
SCRIPTED = {f"{{{MATHML}}}{tag}" for tag in ("msub", "msup", "msubsup", "munder", "mover", "munderover")}
ET.register_namespace("", MATHML)


def tag(element: ET.Element) -> str:
    """An element's MathML tag without the namespace."""
    return element.tag.removeprefix(f"{{{MATHML}}}")


def is_prime(element: ET.Element) -> bool:
    """True for an <mi>/<mo> (or an <mrow> of one) holding only primes."""
    while tag(element) == "mrow" and len(element) == 1:
        element = element[0]
    return tag(element) in ("mi", "mo") and bool(element.text) and set(element.text) <= PRIMES


def prime_operator(prime: ET.Element) -> ET.Element:
    """A prime as the operator that follows its base."""
    while tag(prime) == "mrow":
        prime = prime[0]
    mark = ET.Element(f"{{{MATHML}}}mo", {"lspace": "0", "rspace": "0"})
    mark.text = prime.text
    return mark


FUNCTIONS = {"log", "exp", "ln", "max", "min", "arg", "sin", "cos", "tanh", "softmax", "sign", "det", "dim", "diag"}


def space_functions(tree: ET.Element) -> None:
    """A thin space around a function name written as one multi-letter identifier (β log π read "βlogπ")."""
    for parent in tree.iter():
        children = list(parent)
        if tag(parent) in ("msub", "msup", "msubsup", "mfrac", "mover", "munder", "munderover", "msqrt", "mroot"):
            continue  # these take their children by position
        rebuilt, changed = [], False
        for index, child in enumerate(children):
            is_function = tag(child) == "mi" and (child.text or "") in FUNCTIONS or (
                tag(child) in ("msub", "msup", "msubsup", "munder") and len(child) and tag(child[0]) == "mi"
                and (child[0].text or "") in FUNCTIONS)
            if is_function and index > 0 and tag(children[index - 1]) != "mo":
                rebuilt.append(ET.Element(f"{{{MATHML}}}mspace", {"width": "0.1667em"}))
                changed = True
            rebuilt.append(child)
            if is_function and index + 1 < len(children) and tag(children[index + 1]) != "mo":
                rebuilt.append(ET.Element(f"{{{MATHML}}}mspace", {"width": "0.1667em"}))
                changed = True
        if changed:
            for child in children:
                parent.remove(child)
            parent.extend(rebuilt)


def fix_scripts(tree: ET.Element) -> None:
    """What browsers draw badly from latex2mathml's output: a prime written as a superscript (h' is drawn as a
    small mark high above h: the prime glyph is already raised) and operator spacing inside scripts (x_{<t} reads
    "x < t"). Primes follow their base; operators in scripts get no extra space."""
    for parent in tree.iter():
        for index, child in enumerate(list(parent)):
            if tag(child) == "msup" and len(child) == 2 and is_prime(child[1]):
                row = ET.Element(f"{{{MATHML}}}mrow")
                row.extend([child[0], prime_operator(child[1])])
                parent[index] = row
            elif tag(child) == "msubsup" and len(child) == 3 and is_prime(child[2]):
                base = ET.Element(f"{{{MATHML}}}mrow")
                base.extend([child[0], prime_operator(child[2])])
                script = ET.Element(f"{{{MATHML}}}msub")
                script.extend([base, child[1]])
                parent[index] = script
    for element in tree.iter():
        if element.tag in SCRIPTED:
            for script in list(element)[1:]:
                for mo in script.iter(f"{{{MATHML}}}mo"):
                    mo.attrib.setdefault("lspace", "0")
                    mo.attrib.setdefault("rspace", "0")


def tex_to_mathml(tex: str, display: bool) -> str:
    """One formula as a <math> element; raises ValueError when latex2mathml cannot convert it."""
    try:
        tex = OPERATOR_NAMES.sub(r"\\operatorname{\1}", tex.strip())
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises many kinds of errors for bad or unsupported TeX
        raise ValueError(f"cannot convert TeX {tex!r}: {type(err).__name__} {err}") from err
    if UNCONVERTED.search(mathml):
        raise ValueError(f"unsupported TeX command or environment in {tex!r}")
    tree = ET.fromstring(mathml)
    fix_scripts(tree)
    space_functions(tree)
    mathml = ET.tostring(tree, encoding="unicode")
    # Markdown must not read * or _ inside the MathML as emphasis, nor | as a table column.
    return mathml.replace("*", "&#x2A;").replace("_", "&#x5F;").replace("|", "&#x7C;").replace("\n", " ")


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
