"""The report page in a real browser: headless Chromium at 1280×900 (Debian's chromium and chromium-driver).

``.ci/chromium.sh`` installs both when missing; without them this test skips and says why. Set
``POOLKIT_REPORT_HTML`` to extra ``index.html`` paths (separated by ``:``), e.g. the report of ``make demo``,
to check them too, and ``POOLKIT_REPORT_SCREENSHOTS`` to a folder to keep a screenshot of each page.
"""

import base64
import os
import shutil
from pathlib import Path

import pytest

from poolkit.lab.report import write_report
from poolkit.lab.study import StudyConfig, run_study
from poolkit.lab.train import TrainConfig

WIDTH, HEIGHT = 1280, 900


def _find(names: tuple[str, ...]) -> str | None:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


CHROMIUM = _find(("chromium", "chromium-browser", "google-chrome"))
DRIVER = _find(("chromedriver",))


def _skip_reason() -> str | None:
    why = os.environ.get("POOLKIT_TEST_CHROMIUM_SKIP")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the dev extra: pip install -e '.[dev]')"
    if CHROMIUM is None or DRIVER is None:
        missing = " and ".join(n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if p is None)
        return (f"{missing} not found; `bash .ci/chromium.sh` installs Debian's chromium and chromium-driver "
                f"(as root){': ' + why if why else ''}")
    return None


pytestmark = [pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
              pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A small real study's report and a synthetic one with every optional attribute."""
    from test_report import make_search_study, make_study

    d = tmp_path_factory.mktemp("browser-reports")
    cfg = StudyConfig("digits-shift", pools=["max"], levers=[0, 0.5, 1], seeds=2, train_size=40,
                      data_options={"test_size": 20}, train=TrainConfig(steps=3, channels=4))
    url, name = run_study(cfg, out=d / "real")
    out = {"real": write_report(name, url, d / "real-report") / "index.html"}
    out["full"] = write_report("synthetic", make_study(d), d / "full-report") / "index.html"
    out["search"] = write_report("search", make_search_study(d), d / "search-report") / "index.html"
    for i, extra in enumerate(p for p in os.environ.get("POOLKIT_REPORT_HTML", "").split(":") if p):
        out[f"extra{i}"] = Path(extra).resolve()
    return out


def _check(driver, path: Path, label: str) -> None:
    driver.get_log("browser")  # drop what an earlier page logged
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    inner = driver.execute_script("return window.innerWidth")
    assert inner == WIDTH, f"window is {inner} px wide, asked {WIDTH}"

    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    figures = len(list(path.parent.glob("*.png")))
    assert len(images) == figures >= 3, (label, images, figures)
    for alt, complete, w, h in images:
        assert complete and w > 0 and h > 0, f"{label}: image {alt!r} did not load"

    def overflow() -> tuple[int, int]:
        return driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")

    scroll, client = overflow()
    assert scroll <= client, f"{label}: page is {scroll} px wide in a {client} px window"
    # the collapsed trials table, opened, still scrolls inside its own box, not the page
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    scroll, client = overflow()
    assert scroll <= client, f"{label}: with the trials open the page is {scroll} px wide in {client} px"
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = false)")

    text = driver.find_element("id", "finding").text
    assert text.startswith("Finding:") and len(text) > 60 and "λ" in text, text
    assert driver.find_element("id", "finding").is_displayed()
    # every table fits as it is: none needs its own scroll bar (the trials table, collapsed, aside)
    boxes = driver.execute_script(
        "return Array.from(document.querySelectorAll('main table')).filter(t => !t.closest('details')).map("
        "t => [t.parentElement.scrollWidth, t.parentElement.clientWidth, t.getBoundingClientRect().right])")
    assert len(boxes) >= 2
    for sw, cw, right in boxes:
        assert sw <= cw and right <= client, f"{label}: a table is {sw} px wide in a {cw} px box"

    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, f"{label}: console errors {errors}"

    pdf = base64.b64decode(driver.print_page())  # readable printed: Chromium lays it out as a PDF
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000

    shots = os.environ.get("POOLKIT_REPORT_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(shots) / f"{label}.png"))
        Path(shots, f"{label}.pdf").write_bytes(pdf)


def test_report_pages_in_chromium(browser, pages):
    for label, path in pages.items():
        _check(browser, path, label)
