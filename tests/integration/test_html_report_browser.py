"""The HTML report in a real browser (headless chromium, no network): no console errors
(a blocked script or style would log one), one treemap rectangle per top-level directory of
size > 0, one table row per layer and per finding; a screenshot is kept as an artifact
(in $DISTILL_TEST_ARTIFACTS, default tests/artifacts/).

chromium and chromium-driver (Debian) and selenium (PyPI) are required: without them these
tests fail, they do not skip."""

from __future__ import annotations

import json
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
from tests.helpers.readback import umoci_unpack
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
    """One rect.tm-top per top-level directory of the image (html.py's rule)."""
    return sorted("/" + c["name"] for c in image["tree"]["children"] if c.get("kind") == "dir")


def check_page(driver: webdriver.Chrome, report: dict[str, Any], name: str) -> None:
    page = artifacts() / f"html-report-{name}.html"
    page.write_text(render_html(report), encoding="utf-8")
    open_page(driver, page, [top_dirs(i) for i in report["images"]],
              [len(i["layers"]) for i in report["images"]])
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.security tbody tr")) == \
        len(report["security"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "g.stage-bar")) == len(report["stages"])
    finish_page(driver, name)


def open_page(driver: webdriver.Chrome, page: Path, tops: list[list[str]],
              layers: list[int]) -> None:
    """Load ``page``: one image card per entry of ``tops`` (its top-level directories,
    sorted), each with one treemap rectangle per directory and ``layers`` table rows."""
    driver.get_log("browser")                     # drop what earlier pages logged
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    cards = driver.find_elements(By.CSS_SELECTOR, "section.image")
    assert len(cards) == len(tops)
    for card, dirs, count in zip(cards, tops, layers):
        treemaps = card.find_elements(By.CSS_SELECTOR, "svg.treemap")
        assert len(treemaps) == 1
        rects = treemaps[0].find_elements(By.CSS_SELECTOR, "rect.tm-top")
        assert sorted(r.get_attribute("data-path") or "" for r in rects) == dirs
        assert all(r.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                   for r in rects)
        rows = card.find_elements(By.CSS_SELECTOR, "table.layers tbody tr")
        assert len(rows) == count


def finish_page(driver: webdriver.Chrome, name: str) -> None:
    """A screenshot kept as an artifact, and no console error."""
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


def test_build_report(browser: webdriver.Chrome, distill: Any, busybox_image: str,
                      tmp_path: Path) -> None:
    """``distill build --report``: the final image and the build stage side by side, each
    treemap with one rectangle per top-level directory that umoci finds unpacking it."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image} AS build\n"
        "RUN mkdir -p /work/out && dd if=/dev/zero of=/work/big bs=1000 count=2000 "
        "&& echo app > /work/out/app\n"
        "FROM scratch\n"
        "COPY --from=build /work/out/app /app/app\n"
        "COPY --from=build /etc/passwd /etc/passwd\n")
    page = artifacts() / "html-report-build.html"
    distill("build", "--progress", "plain", "--report", str(page), "-t", "report-app:1", "-o",
            f"type=oci,dest={tmp_path / 'final'},tar=false", str(ctx))
    distill("build", "--progress", "plain", "--target", "build", "-t", "report-stage:1", "-o",
            f"type=oci,dest={tmp_path / 'stage'},tar=false", str(ctx))
    tops, layers = [], []
    for name in ("final", "stage"):
        layout = tmp_path / name
        index = json.loads((layout / "index.json").read_text())
        ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        rootfs = umoci_unpack(layout, ref, tmp_path / f"{name}-bundle")
        tops.append(sorted("/" + p.name for p in rootfs.iterdir()
                           if p.is_dir() and not p.is_symlink()))
        manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"]
                               .split(":")[1]).read_text())
        layers.append(len(manifest["layers"]))
    assert tops[0] == ["/app", "/etc"] and "/work" in tops[1]
    open_page(browser, page, tops, layers)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "smaller than stage build" in body
    finish_page(browser, "build")
