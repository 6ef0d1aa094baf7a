"""Report pages show their formulas with no network: LaTeX in Markdown becomes MathML when the page is built
(vaelib.reporting.mathml), and the page loads no script from a CDN. Checked on small texts, on a rendered notebook
of the repository, and in Chromium with every request that is not for a local file refused.

The browser test needs Chromium at /usr/bin/chromium and the playwright package (as tests/test_browser.py);
skipped with the reason when either is missing.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest

from vaelib.reporting.mathml import Formulas, latex_to_mathml, markdown_to_mathml, notebook_to_mathml
from vaelib.reporting.report import render_html

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "00_vae_from_scratch.ipynb"
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


def convert(text: str) -> tuple[str, Formulas]:
    formulas = Formulas()
    return markdown_to_mathml(text, formulas), formulas


def test_inline_math_becomes_one_inline_math_element_markdown_cannot_read():
    out, formulas = convert(r"the posterior $q_\phi(z|x)$ and $a*b*c$, with $\mathbb E$.")
    assert formulas == Formulas(converted=3)
    assert out.count('<math display="inline">') == 3 and "$" not in out
    assert "<msub><mi>q</mi><mi>ϕ</mi></msub>" in out and "&#124;" in out  # |, * as references: no table, no <em>
    assert "*" not in out and "_" not in out and "|" not in out
    assert "<mi>𝔼</mi>" in out and "mathvariant" not in out  # as a letter: Chromium ignores mathvariant


def test_a_function_name_is_followed_by_a_thin_space_unless_a_parenthesis_follows():
    out = latex_to_mathml(r"\log p + \log(x) + \log_2 \pi")
    assert out.count("<mspace") == 2 and '<mi>log</mi><mspace width="0.1667em" /><mi>p</mi>' in out
    assert "<msub><mi>log</mi><mn>2</mn></msub><mspace" in out and "<mi>log</mi><mo" in out


@pytest.mark.parametrize("text", [r"$$\frac{a}{b}$$", "$$\n\\frac{a}{b}\n$$", r"\[\frac{a}{b}\]",
                                  r"\\[\frac{a}{b}\\]", "\\begin{equation}\n\\frac{a}{b}\n\\end{equation}"])
def test_display_math_becomes_a_block_math_element_on_one_line(text):
    out, formulas = convert(f"before\n{text}\nafter")
    assert formulas.converted == 1 and not formulas.failures
    assert re.fullmatch(r'before\n<math display="block"><mrow>.*<mfrac>.*</math>\nafter', out)


def test_parenthesised_inline_math_and_an_aligned_environment():
    out, formulas = convert(r"\(x\) and \\(y\\) and $$\begin{aligned} a &= b \\ &= c \end{aligned}$$")
    assert formulas.converted == 3 and out.count('display="inline"') == 2
    assert "<mtable" in out and "&amp;" not in out and "<mi>&" not in out  # aligned: a table, not literal &


@pytest.mark.parametrize("text", [r"costs \$5 and \$6", r"a literal \$x\$", "`$x$` is code", "``a $b` c$``",
                                  "a lone $ sign\n\nand a lone one $ later", "costs $5 and $6 each", "$ x$", "$x $",
                                  "```\n$x$ in a fence\n```", "~~~~\n$$x$$\n~~~\n~~~~"])
def test_escaped_dollars_code_and_unpaired_dollars_are_left_alone(text):
    assert convert(text) == (text, Formulas())


def test_a_lone_dollar_does_not_swallow_the_paragraphs_after_it():
    text = "a lone $ sign, then\n\na new paragraph with $x$ and `$y$`\n\n```\n$z$\n```\nand $w$"
    out, formulas = convert(text)
    assert formulas.converted == 2 and out.startswith("a lone $ sign, then\n\na new paragraph with <math")
    assert "`$y$`" in out and "```\n$z$\n```\n" in out and out.endswith("</math>")


@pytest.mark.parametrize("latex, why", [("x^", "MissingSuperScriptOrSubscriptError"), (r"\frac{a}{", "NoAvailable"),
                                        (r"\left( x", "ExtraLeft"), (r"\unknowncommand{x_1}", r"\unknowncommand"),
                                        (r"\begin{eqnarray} a &= b \end{eqnarray}", "not converted: &")])
def test_a_formula_that_cannot_be_converted_stays_latex_in_code_and_is_counted(latex, why):
    out, formulas = convert(f"see ${latex}$ and $y$")
    assert formulas.converted == 1 and formulas.failed == 1 and formulas.failures[0].startswith(latex)
    assert why in formulas.failures[0]
    code = re.search(r'<code class="latex" title="[^"]*">(.*?)</code>', out)[1]
    assert code.replace("&#92;", "\\").replace("&#95;", "_").replace("&amp;", "&") == latex
    with pytest.raises(ValueError):
        latex_to_mathml(latex)


def test_markdown_cells_and_markdown_outputs_are_converted_in_place():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("display(Markdown(...))")
    table = "| a | $p(x|z)$ |\n|---|---|\n| 1 | $x^$ |"
    code.outputs = [nbformat.v4.new_output("display_data", {"text/markdown": table, "text/plain": "<Markdown>"}),
                    nbformat.v4.new_output("stream", text="$not markdown$")]
    nb.cells = [nbformat.v4.new_markdown_cell(r"$$\sum_i x_i$$ and `$code$`"), code,
                nbformat.v4.new_raw_cell("$raw$")]
    formulas = notebook_to_mathml(nb)
    assert formulas.converted == 2 and formulas.failures == ["x^: MissingSuperScriptOrSubscriptError"]
    assert nb.cells[0].source.startswith('<math display="block">') and nb.cells[0].source.endswith("`$code$`")
    table = code.outputs[0].data["text/markdown"]
    assert table.startswith("| a | <math") and '| 1 | <code class="latex"' in table
    assert code.outputs[1].text == "$not markdown$" and nb.cells[2].source == "$raw$"


def test_nbconvert_renders_the_math_intact_and_the_page_loads_nothing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("**Bold** $q_\\phi(z|x) = a*b*c$ and $a_1 + b_1$ *it*.\n\n"
                                              "| x | $p(x|z)$ |\n|---|---|\n| 1 | $\\beta$ |\n\n$$x^$$")]
    formulas = render_html(_write(nb, tmp_path / "nb.ipynb"), tmp_path / "nb.html", "a page")
    page = (tmp_path / "nb.html").read_text()
    assert formulas.converted == 4 and formulas.failed == 1
    body = page[page.index("<body"):]
    assert body.count("<math") == 4 and body.count("</math>") == 4
    assert "<strong>Bold</strong>" in body and "<em>it</em>" in body and body.count("<em>") == 1  # none in math
    assert "<msub><mi>q</mi><mi>ϕ</mi></msub>" in body and "<mo>*</mo><mi>b</mi><mo>*</mo>" in body
    assert re.search(r"<td>\s*<math", body) and '<code class="latex"' in body
    _offline(page)


def _write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, str(path))
    return path


def _offline(page: str) -> None:
    assert "mathjax" not in page.lower()
    assert not re.search(r"<script[^>]*\ssrc=", page)  # no script file at all, local or remote
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)  # nor a stylesheet, image or font
    assert not re.search(r"""@import|url\(["']?(?:https?:)?//""", page)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, Formulas]:
    out = tmp_path_factory.mktemp("page") / "00_vae_from_scratch.html"
    return out, render_html(NOTEBOOK, out, "00_vae_from_scratch")


def test_a_real_notebook_renders_every_formula_as_mathml_with_no_network(rendered):
    path, formulas = rendered
    page = path.read_text()
    assert formulas.converted >= 100 and formulas.failures == []
    assert page.count("<math") == formulas.converted
    _offline(page)
    text = re.sub(r"<[^>]+>", "", re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S))
    assert "$" not in text and "\\frac" not in text and "\\mathbb" not in text  # no LaTeX left for MathJax


def _display_latex() -> list[str]:
    """The LaTeX of the notebook's display formulas ($$...$$ in its markdown cells), in order."""
    cells = nbformat.read(str(NOTEBOOK), as_version=4).cells
    return [m[1] for c in cells if c.cell_type == "markdown" for m in re.finditer(r"\$\$(.+?)\$\$", c.source, re.S)]


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"no Chromium at {CHROMIUM} (install it with: apt-get install -y chromium)")
def test_chromium_typesets_the_formulas_with_the_network_refused(rendered):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    path, formulas = rendered
    display = _display_latex()
    which = next(i for i, latex in enumerate(display) if "\\frac" in latex and "_" in latex)
    refused: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.route("**/*", only_files)
            page.goto(path.as_uri(), wait_until="load")
            assert page.evaluate("document.querySelectorAll('math').length") == formulas.converted
            text = page.evaluate("document.body.innerText")
            assert "$$" not in text and "\\frac" not in text and "\\theta" not in text
            blocks = page.locator("math[display=block]")
            assert blocks.count() == len(display)
            formula = blocks.nth(which)
            formula.scroll_into_view_if_needed()
            assert formula.is_visible()
            box = formula.bounding_box()
            assert box["width"] > 0 and box["height"] > 0
            layout = formula.evaluate(_LAYOUT, f"$${display[which]}$$")
        finally:
            browser.close()
    assert refused == []  # the page asked for nothing beyond its own file
    assert layout["numerator"] <= layout["denominator"]  # a fraction: typeset, one part above the other
    assert layout["base"] < layout["subscript"]  # a subscript: below its base's middle
    assert layout["height"] > 1.5 * layout["rawHeight"] and layout["width"] < layout["rawWidth"]  # not raw text


# Where the parts of a <math> land, and the box its LaTeX (`raw`) takes as plain text, on one line, beside it.
_LAYOUT = """(math, latex) => {
    const [num, den] = math.querySelector('mfrac').children;
    const [base, script] = math.querySelector('msub').children;
    const raw = document.createElement('span');
    raw.style.whiteSpace = 'nowrap';
    raw.textContent = latex;
    math.parentNode.insertBefore(raw, math);
    const m = math.firstElementChild.getBoundingClientRect(), r = raw.getBoundingClientRect();  // <mrow>: the ink
    const b = base.getBoundingClientRect(), s = script.getBoundingClientRect();
    raw.remove();
    return {numerator: num.getBoundingClientRect().bottom, denominator: den.getBoundingClientRect().top,
            base: (b.top + b.bottom) / 2, subscript: (s.top + s.bottom) / 2,
            width: m.width, height: m.height, rawWidth: r.width, rawHeight: r.height};
}"""
