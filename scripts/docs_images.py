"""Regenerate the pictures in docs/images/ that docs/diagnostics.md shows.

    python scripts/docs_images.py

Writes, for the bundled `sort_ties` on [3, 1, 2, 1]: the attention heatmaps and the
program graph (pictures.py: matplotlib and Graphviz's dot), the explorer's static page,
and screenshots of three of its views (head, residual, circuit) taken in headless chromium (selenium with the
distribution's chromium and chromedriver, as the tests use); and the interference view of
`sort_unique` (max_seq_len 5) compressed to half its residual width (`--only-compressed`
makes just that one).
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

from rasp_compiler import compress
from rasp_compiler.explorer.page import write_static_page
from rasp_compiler.errors import CompileWarning
from rasp_compiler.program_files import load_program

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
EXAMPLE = [3, 1, 2, 1]


def open_page(page: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,3000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.get(page.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return driver


def element_screenshot(driver, view: str, path: Path) -> None:
    """One view, whole: the window is made as tall as the page first (chromium draws only
    what is inside the window)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, height + 50)
    driver.find_element("id", view).screenshot(str(path))
    print(f"wrote {path}")


def screenshots(page: Path, head: str) -> None:
    driver = open_page(page)
    try:
        driver.find_element("css selector", f"#plan .box.head[data-head='{head}']").click()
        driver.find_element("css selector", "#residual .steps button[data-step='3']").click()
        for view in ("head", "residual", "circuit"):
            element_screenshot(driver, view, IMAGES / f"explorer_{view}.png")
    finally:
        driver.quit()


def compressed_screenshot(page: Path) -> None:
    """sort_unique at half width: its interference view, with the strongest pair selected."""
    spec = load_program("sort_unique")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        model = spec.compile(max_seq_len=5)  # keeps its name: the page says sort_unique
    small = compress(model, model.shape.d_model // 2, seed=0, steps=1000)
    print(small)
    write_static_page(small, [[3, 1, 2]], page, owner=spec.name)
    driver = open_page(page)
    try:
        driver.find_element("css selector", "#interference-pairs tr[data-dim]").click()
        element_screenshot(driver, "interference", IMAGES / "explorer_interference.png")
    finally:
        driver.quit()
        page.unlink()


def main() -> None:
    compressed_screenshot(IMAGES / "compressed_report.html")
    if "--only-compressed" in sys.argv:
        return
    spec = load_program("sort_ties")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        model = spec.compile()
    for path in (model.attention_heatmaps(EXAMPLE, IMAGES / "sort_ties_heads.png"),
                 model.graph_picture(IMAGES / "sort_ties_graph.png")):
        print(f"wrote {path}")
    inputs = [EXAMPLE] + [list(example[0]) for example in spec.examples]
    page = write_static_page(model, inputs, IMAGES / "sort_ties_report.html",
                                      owner=spec.name)
    print(f"wrote {page}")
    screenshots(page, "L1H0")


if __name__ == "__main__":
    main()
