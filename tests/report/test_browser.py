"""The pages in a real browser: headless Chromium opens the explorer and the demo page, clicks
a unit, drags over a span of text, and finds the page updated and the console free of errors.
Skipped, with the reason, where Selenium, Chromium or its driver is missing (.ci/run installs
them: Debian's chromium and chromium-driver, and selenium from the [dev] extra)."""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from longshort.inspect.explorer import explore
from longshort.report.page import render
from longshort.train.model import SequenceModel

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next(filter(None, map(shutil.which, BROWSERS)), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if BROWSER is None or DRIVER is None:
        pytest.skip(
            "no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    options.binary_location = BROWSER
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))  # no network needed
    yield driver
    driver.quit()


def _errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


TEXT = "def f(a, b):\n    # add them\n    return (a + b) * 'x'\n" * 8


@pytest.fixture(scope="module")
def lm_page(tmp_path_factory):
    torch.manual_seed(0)
    chars = sorted(set(TEXT))
    model = SequenceModel("lstm", len(chars), 16, len(chars), tokens=True, readout="all")
    x = torch.tensor([[chars.index(c) for c in TEXT]])
    return explore(model, x, list(TEXT), tmp_path_factory.mktemp("page") / "explore.html")


def _background(driver, i: int) -> str:
    span = driver.find_element(By.CSS_SELECTOR, f'#text span[data-i="{i}"]')
    return span.value_of_css_property("background-color")


def test_explorer_clicks_and_selection_update_the_page(browser, lm_page):
    browser.get(lm_page.as_uri())
    status = browser.find_element(By.ID, "status")
    assert status.text == "layer 0 · c · unit 0"
    before = [_background(browser, i) for i in range(40)]
    browser.find_element(By.CSS_SELECTOR, '#units button[data-u="3"]').click()
    assert status.text == "layer 0 · c · unit 3"
    assert [_background(browser, i) for i in range(40)] != before  # recoloured by unit 3
    first, last = (
        browser.find_element(By.CSS_SELECTOR, f'#text span[data-i="{i}"]') for i in (4, 9)
    )
    ActionChains(browser).click_and_hold(first).move_to_element(last).release().perform()
    vis = browser.find_element(By.ID, "vis").text
    a, b = map(int, re.match(r"span (\d+)–(\d+): “", vis).groups())  # the dragged characters
    assert 3 <= a <= 5 and 8 <= b <= 9 and "unit(s) of layer 0 have c ≥ 0.5" in vis
    browser.find_element(By.CSS_SELECTOR, "#ranking tr.pick").click()  # a unit tracking a feature
    assert status.text != "layer 0 · c · unit 3"
    browser.find_element(By.CSS_SELECTOR, '#text span[data-i="30"]').click()
    assert status.text.endswith("step 30")
    assert "from step 30" in browser.find_element(By.ID, "carousel").text
    assert browser.find_elements(By.CSS_SELECTOR, "#saturation circle")  # the scatter is drawn
    assert _errors(browser) == []


def test_selection_finds_the_places_where_the_units_fire(browser, lm_page):
    browser.get(lm_page.as_uri())
    found = browser.execute_script(
        "for (let u = 0; u < 16; u++) for (let a = 1; a < 200; a++) {"
        "  explorer.pick(0, 'h', u); explorer.state.tau = 0.0; explorer.selectSpan(a, a + 1);"
        "  if (explorer.state.units.length) return [u, a, explorer.state.units.length]; }"
        "return null;"
    )
    assert found is not None, "no span with units on across it and off around it"
    count = browser.find_element(By.ID, "vis-count").text
    outlined = browser.find_elements(By.CSS_SELECTOR, "#text span.match")
    assert count.endswith("place(s) where they all fire (outlined in the text):")
    assert len(outlined) >= int(count.split()[0])
    assert _errors(browser) == []


def test_sequences_with_classes_draw_a_trace_per_class(browser, tmp_path):
    torch.manual_seed(0)
    model = SequenceModel("gru", 2, 6, 2)
    x = torch.randn(4, 12, 2)
    tokens = [[f"{v:.1f}" for v in row[:, 0].tolist()] for row in x]
    page = explore(model, x, tokens, tmp_path / "gru.html", labels=["up", "down", "up", "down"])
    browser.get(page.as_uri())
    assert len(browser.find_elements(By.CSS_SELECTOR, "#classes polyline")) == 2
    quantities = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#q option")]
    assert quantities == ["h", "r", "z", "n"]
    browser.find_element(By.CSS_SELECTOR, '#units button[data-u="5"]').click()
    assert browser.find_element(By.ID, "status").text == "layer 0 · h · unit 5"
    assert _errors(browser) == []


def test_demo_page_opens_without_errors(browser, tmp_path):
    rows = [{"task": "adding", "cell": "lstm", "metric": 0.01, "solved": True}]
    summary = {"verdict": "The LSTM solved it.", "seconds": 1.0, "seed": 0, "torch": "2.13"}
    page = tmp_path / "demo.html"
    page.write_text(render(rows, [], summary, 60.0), encoding="utf-8")
    browser.get(page.as_uri())
    assert (
        browser.find_element(By.TAG_NAME, "h1").text == "Can a network remember across a long gap?"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "table tr")) == 2
    assert _errors(browser) == []
