"""The HTML report in a real browser (headless chromium, no network): no console errors
(a blocked script or style would log one), one treemap rectangle per top-level directory of
size > 0, one table row per layer and per finding; a screenshot is kept as an artifact
(in $DISTILL_TEST_ARTIFACTS, default tests/artifacts/).

chromium and chromium-driver (Debian) and selenium (PyPI) are required: without them these
tests fail, they do not skip."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from distill.formats.stored import load
from distill.report.analyze import analyze
from distill.report.html import render_html
from distill.store.store import Store
from tests.unit.test_html_report import hostile_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def artifacts() -> Path:
    where = Path(os.environ.get("DISTILL_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    for tool in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(tool), f"{tool} is required (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 # no network: every host fails to resolve and every fetch goes to a dead proxy
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def top_dirs(image: dict[str, Any]) -> list[str]:
    """The rule html.py states: one rect.tm-top per top-level directory of size > 0."""
    return sorted("/" + c["name"] for c in image["tree"]["children"]
                  if c.get("kind") == "dir" and c["size"] > 0)


def check_page(driver: webdriver.Chrome, report: dict[str, Any], name: str) -> None:
    page = artifacts() / f"html-report-{name}.html"
    page.write_text(render_html(report), encoding="utf-8")
    driver.get_log("browser")                     # drop what earlier pages logged
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"

    cards = driver.find_elements(By.CSS_SELECTOR, "section.image")
    assert len(cards) == len(report["images"])
    for card, image in zip(cards, report["images"]):
        treemaps = card.find_elements(By.CSS_SELECTOR, "svg.treemap")
        assert len(treemaps) == 1
        rects = treemaps[0].find_elements(By.CSS_SELECTOR, "rect.tm-top")
        assert sorted(r.get_attribute("data-path") or "" for r in rects) == top_dirs(image)
        assert all(r.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                   for r in rects)
        rows = card.find_elements(By.CSS_SELECTOR, "table.layers tbody tr")
        assert len(rows) == len(image["layers"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.security tbody tr")) == \
        len(report["security"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "g.stage-bar")) == len(report["stages"])

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 200, 600), 8000))
    shot = artifacts() / f"html-report-{name}.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_synthetic_hostile_report(browser: webdriver.Chrome) -> None:
    report = hostile_report()
    second = {**report["images"][0], "label": "largest stage: build", "image": "build"}
    report["images"].append(second)
    check_page(browser, report, "synthetic")
    # the hostile names are on the page as text, and nothing they carried ran
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "</script><script>alert(1)</script>" in body
    assert browser.execute_script("return document.scripts.length") == 0
    assert browser.find_elements(By.CSS_SELECTOR, "body img") == []


def test_busybox_report(browser: webdriver.Chrome, busybox_image: str, store_root: Path) -> None:
    store = Store(store_root)
    found = store.lookup(busybox_image)
    assert found is not None
    image = load(store, found.digest)
    analysis = analyze(store, image, busybox_image).to_json()
    report = {"title": "distill analyze", "images": [{"label": "image", **analysis}],
              "stages": [], "final_vs_largest": "", "security": []}
    assert top_dirs(analysis)
    check_page(browser, report, "busybox")
