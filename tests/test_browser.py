"""The HTML report in a real browser with no Chinese font on the machine: the embedded face draws the text.

Headless Chromium from the system's packages (``apt-get install chromium``; ``.ci/run`` installs it where
it can), driven by Playwright through the DevTools protocol, with fontconfig restricted to a folder of
Latin fonts.  ``CSS.getPlatformFontsForNode`` says which font drew each element's glyphs.  The test first
shows that without the embedded face the page has no Chinese font to use (so the check can fail), then
that with it every Chinese heading, table cell and caption is drawn by the embedded face.  The screenshot
is kept in the test's folder (and copied to ``$FISCALSIM_SCREENSHOTS`` when set).
"""

import os
import re
import shutil
from pathlib import Path

import pytest

import sim.pipeline as pipeline
from sim import report

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the dev extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium: apt-get install chromium")
LATIN_FONTS = next((d for d in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu") if Path(d).is_dir()),
                   None)


def _fontconfig(folder: Path) -> dict[str, str]:
    """An environment whose fontconfig knows only a folder of Latin fonts (or none at all)."""
    folder.mkdir(parents=True, exist_ok=True)
    fonts = f"<dir>{LATIN_FONTS}</dir>" if LATIN_FONTS else ""
    (folder / "fonts.conf").write_text(
        f'<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>{fonts}'
        f"<cachedir>{folder / 'cache'}</cachedir></fontconfig>", encoding="utf-8")
    return {**os.environ, "FONTCONFIG_FILE": str(folder / "fonts.conf")}


def _fonts_used(page, selector: str) -> list[dict]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    settings = pipeline.Settings(replications=4, n=5_000, per_draw=2, sensitivity_samples=2, seed=3)
    pipeline.run(model="template", settings=settings, out=folder / "run", progress=False)
    return folder / "run" / "report" / "report.zh-Hans.html"


def test_the_embedded_font_draws_every_chinese_character_without_a_system_font(page_file, tmp_path):
    text = page_file.read_text(encoding="utf-8")
    assert f'font-family:"{report.FONT_FAMILY}"' in text and "data:font/otf;base64," in text
    stripped = tmp_path / "no-font.html"
    stripped.write_text(re.sub(r"@font-face\{[^}]*\}", "", text), encoding="utf-8")
    selectors = ("h1", "table.answer td.w", "figcaption", "ul.definitions li")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], env=_fontconfig(tmp_path / "fc"))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(stripped.as_uri())
            page.evaluate("document.fonts.ready")
            bare = _fonts_used(page, "h1")
            assert not any("CJK" in f["familyName"] or f["isCustomFont"] for f in bare), bare
            page.goto(page_file.as_uri())
            page.evaluate("document.fonts.ready")
            for selector in selectors:
                fonts = _fonts_used(page, selector)
                assert [f["familyName"] for f in fonts] == ["Noto Sans CJK SC"], (selector, fonts)
                assert fonts[0]["isCustomFont"] and fonts[0]["glyphCount"] > 0
            shot = tmp_path / "report.zh-Hans.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    if os.environ.get("FISCALSIM_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["FISCALSIM_SCREENSHOTS"]) / shot.name)
