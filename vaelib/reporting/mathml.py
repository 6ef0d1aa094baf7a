"""Formulas as MathML, written into a report page when it is built, so the page shows them without a network.

nbconvert's HTML pages leave LaTeX to MathJax, loaded from a CDN: offline, every formula stays raw LaTeX. Here the
math of a notebook's Markdown (its markdown cells, and outputs shown as `text/markdown`) is converted with
latex2mathml before nbconvert sees it: `$$...$$`, `\\[...\\]` and a bare `\\begin{env}...\\end{env}` as display
math, `$...$` and `\\(...\\)` inline (also Jupyter's `\\\\[ \\\\(` forms). Left alone: escaped dollars (`\\$`), code
spans and fenced code blocks, and a delimiter with no partner in its paragraph (a span never crosses a blank
line; an inline `$` opens only before a non-space and closes only after one, not before a digit: "costs $5 and
$6" stays text). A formula latex2mathml cannot convert is kept as its LaTeX in a <code> element and counted.
The MathML's text is written as character references where Markdown would read it (`_ * \\ |`...), so
nbconvert's Markdown renderer passes it through as inline HTML. OFFLINE_TEMPLATE is the lab template without the
scripts it would fetch (MathJax, require.js, the widgets' renderer, mermaid).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from latex2mathml.converter import convert_to_element

# nbconvert's lab template (index.html.j2) without what it loads from CDNs: MathJax (the formulas are MathML),
# require.js (for old-style Javascript outputs and the widgets' renderer), the widgets' renderer from unpkg (so a
# widget's output is blank, as it was offline before) and mermaid (no notebook draws a diagram). Its CSS is inlined
# and names no web font; images are embedded as data: URLs.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

_LINE = r"(?:[^\n]|\n(?![ \t]*\n))"  # any character; a line break only if no blank line follows it
_TEX = r"(?:[^$\\\n]|\\[^\n]|\\?\n(?![ \t]*\n))"  # between dollars: `\$` and `\\` are one unit, no bare `$`


def _between(name: str, opening: str, closing: str) -> str:
    """A span from `opening` to the first `closing` in the same paragraph; its inside is the group `name`."""
    return rf"{re.escape(opening)}(?P<{name}>(?:(?!{re.escape(closing)}){_LINE})+?){re.escape(closing)}"


# One pass, left to right: at each place the first alternative that matches wins.
_SPANS = re.compile("|".join([
    rf"(?P<code>(?<!`)(?P<ticks>`+)(?!`){_LINE}*?(?<!`)(?P=ticks)(?!`))",  # a code span, left as it is
    _between("jdisplay", r"\\[", r"\\]"), _between("jinline", r"\\(", r"\\)"),  # Jupyter's \\[ ... \\]
    r"(?P<escaped>\\[\\$`])",  # \$ stays a dollar, \\ a backslash, \` a backtick
    _between("display", r"\[", r"\]"), _between("inline", r"\(", r"\)"),
    rf"\$\$(?P<ddisplay>{_TEX}+?)\$\$",
    rf"(?<!\$)\$(?![\s$])(?P<dinline>{_TEX}+?)(?<!\s)\$(?!\d)",
    rf"(?P<env>\\begin\{{(?P<name>[A-Za-z]+\*?)\}}{_LINE}*?\\end\{{(?P=name)\}})",
]))
_DISPLAY = {"jdisplay", "display", "ddisplay", "env"}
_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})")
# Environments latex2mathml lacks, as ones it has that look the same.
_ALIASES = {"aligned": "align*", "gathered": "displaylines", "gather": "displaylines", "gather*": "displaylines",
            "multline": "displaylines", "multline*": "displaylines"}
_ENV = re.compile(r"\\(begin|end)\{(" + "|".join(re.escape(k) for k in _ALIASES) + r")\}")
# Characters Markdown would read inside the MathML's text (and the <code> of a failed formula): written as
# character references. (`&`, `<`, `>` are escaped already.)
_MARKDOWN = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_[]~|$"})
# mathvariant (which MathML Core, and so Chromium, ignores except "normal") as Unicode's mathematical letters.
_VARIANTS = {"bold": "BOLD", "italic": "ITALIC", "bold-italic": "BOLD ITALIC", "double-struck": "DOUBLE-STRUCK",
             "script": "SCRIPT", "bold-script": "BOLD SCRIPT", "fraktur": "FRAKTUR", "bold-fraktur": "BOLD FRAKTUR",
             "sans-serif": "SANS-SERIF", "bold-sans-serif": "SANS-SERIF BOLD", "monospace": "MONOSPACE",
             "sans-serif-italic": "SANS-SERIF ITALIC", "sans-serif-bold-italic": "SANS-SERIF BOLD ITALIC"}
_LETTER = re.compile(r"(?:LATIN|GREEK) (CAPITAL|SMALL) LETTER (.+)|(DIGIT .+)")
# columnalign (not in MathML Core) as CSS: an aligned equation's columns meet at the relation sign.
_ALIGN = {"right": "text-align: right; padding-right: 0", "left": "text-align: left; padding-left: 0",
          "center": "text-align: center"}
_ROWS = {"math", "mrow", "mtd", "mstyle", "msqrt", "mpadded", "mphantom", "menclose"}  # any number of children
_UNKNOWN = re.compile(r"\\[A-Za-z]+|&")  # a token's whole text: a command latex2mathml does not know, a stray &


@dataclass
class Formulas:
    """What a conversion did: formulas converted, and those kept as LaTeX ("LaTeX: why", one per formula)."""

    converted: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def latex_to_mathml(latex: str, display: bool = False) -> str:
    """One formula as a <math> element on one line; ValueError if latex2mathml cannot convert it."""
    try:
        math = convert_to_element(_ENV.sub(lambda m: f"\\{m[1]}{{{_ALIASES[m[2]]}}}", latex),
                                  display="block" if display else "inline")
    except Exception as err:  # latex2mathml's errors share no base class
        raise ValueError(f"{type(err).__name__} {err}".strip()) from None
    math.attrib.pop("xmlns", None)  # an HTML page puts <math> in the MathML namespace by itself
    for node in list(math.iter()):
        _fix(node)
        _space_functions(node)
    text = ElementTree.tostring(math, encoding="unicode").replace("\n", " ")
    return re.sub(r">([^<]+)<", lambda m: f">{m[1].translate(_MARKDOWN)}<", text)


def _fix(node: ElementTree.Element) -> None:
    """One element as MathML Core renders it: real characters, mathvariant as letters, columnalign as CSS."""
    if node.text:
        if _UNKNOWN.fullmatch(node.text.strip()):  # before unescaping: \& is written as a reference
            raise ValueError(f"not converted: {node.text.strip()}")
        node.text = html.unescape(node.text)  # latex2mathml writes characters as references
        if node.get("mathvariant") in _VARIANTS:
            node.text = "".join(_styled(c, _VARIANTS[node.attrib.pop("mathvariant")]) for c in node.text)
    if node.get("columnalign") in _ALIGN:
        node.set("style", _ALIGN[node.attrib.pop("columnalign")])


def _space_functions(node: ElementTree.Element) -> None:
    """A thin space after a function name (\\log, \\exp: a multi-letter <mi>, maybe with a script) that an operand
    follows in a row, as TeX puts there (MathML Core would set `\\log p` as "logp"); none before `(`."""
    if node.tag not in _ROWS:
        return
    children = list(node)
    for child, after in reversed(list(zip(children, children[1:]))):  # from the end: the indices stay valid
        name = child[0] if child.tag in ("msub", "msup", "msubsup") and len(child) else child
        if name.tag == "mi" and len(name.text or "") > 1 and (name.text or "").isalpha() and after.tag != "mo":
            node.insert(children.index(child) + 1, ElementTree.Element("mspace", width="0.1667em"))


def _styled(char: str, style: str) -> str:
    """`char` in one of Unicode's mathematical alphabets (𝔼 for E, double-struck), else `char` itself."""
    found = _LETTER.fullmatch(unicodedata.name(char, ""))
    if not found:
        return char
    letter = found[3] or f"{found[1]} {found[2]}"
    names = [f"MATHEMATICAL {style} {letter}", f"{style.replace('FRAKTUR', 'BLACK-LETTER')} {letter}"]
    names += ["PLANCK CONSTANT"] if (style, letter) == ("ITALIC", "SMALL H") else []  # the alphabets' gaps
    for name in names:
        try:
            return unicodedata.lookup(name)
        except KeyError:
            continue
    return char


def markdown_to_mathml(text: str, formulas: Formulas | None = None) -> str:
    """Markdown with its formulas as MathML (fenced code blocks and code spans left as they are); counts into
    `formulas` when given."""
    formulas = formulas if formulas is not None else Formulas()
    return "".join(part if fenced else _SPANS.sub(lambda m: _replace(m, formulas), part)
                   for part, fenced in _blocks(text))


def _blocks(text: str) -> list[tuple[str, bool]]:
    """`text` cut into (part, is a fenced code block); a fence left open runs to the end, as in CommonMark."""
    parts: list[tuple[str, bool]] = []
    fence = ""  # the open fence's backticks or tildes
    for line in text.splitlines(keepends=True):
        inside = bool(fence)
        if not fence and (opened := _FENCE.match(line)):
            fence, inside = opened[1], True
        elif fence and _closes(line, fence):
            fence = ""  # the closing fence belongs to the block
        if parts and parts[-1][1] == inside:
            parts[-1] = (parts[-1][0] + line, inside)
        else:
            parts.append((line, inside))
    return parts


def _closes(line: str, fence: str) -> bool:
    """Whether `line` closes a code block opened with `fence`: only that character, at least as many."""
    bare = line.strip()
    return len(bare) >= len(fence) and set(bare) == {fence[0]}


def _replace(m: re.Match[str], formulas: Formulas) -> str:
    """What one span of _SPANS becomes: a formula's MathML (or its LaTeX as code), anything else itself."""
    kind = m.lastgroup
    if kind in ("code", "escaped"):
        return m[0]
    latex = m[0] if kind == "env" else m[kind]
    try:
        mathml = latex_to_mathml(latex, display=kind in _DISPLAY)
    except ValueError as err:
        formulas.failures.append(f"{' '.join(latex.split())}: {err}")
        code = html.escape(" ".join(latex.split()), quote=False).translate(_MARKDOWN)
        return f'<code class="latex" title="{html.escape(str(err))}">{code}</code>'
    formulas.converted += 1
    return mathml


def notebook_to_mathml(nb: Any) -> Formulas:
    """Convert, in place, the formulas of a notebook (nbformat v4): its markdown cells and its outputs' `text/markdown`
    data. Returns what was converted and what was kept as LaTeX."""
    formulas = Formulas()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_to_mathml(cell.source, formulas)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                markdown = data["text/markdown"]
                data["text/markdown"] = markdown_to_mathml("".join(markdown) if isinstance(markdown, list)
                                                           else markdown, formulas)
    return formulas
