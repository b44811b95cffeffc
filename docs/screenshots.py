"""Screenshots of longshort's pages for the README, taken by headless Chromium.

    python docs/screenshots.py RUNS...      # each a run folder (or demo folder)

Writes docs/explore-<run>[-unit<U>].png for each run folder (its explorer page, made first if
missing, with a unit picked where given as RUN:UNIT[:QUANTITY[:STEP]]) and
docs/demo-page.png for a demo folder. Needs selenium, Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from longshort.apps.inspection import explore_run

DOCS = Path(__file__).resolve().parent


def browser() -> webdriver.Chrome:
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def shoot(driver: webdriver.Chrome, spec: str) -> Path:
    folder, *pick = spec.split(":")
    path = Path(folder)
    if (path / "index.html").is_file():  # a demo folder
        driver.get((path / "index.html").resolve().as_uri())
        out = DOCS / "demo-page.png"
    else:
        page = path / "inspect" / "explore.html"
        if not page.is_file():
            explore_run(path)
        driver.get(page.resolve().as_uri())
        if pick:
            unit, quantity, step = (pick + ["c", "0"][len(pick) - 1 :])[:3]
            driver.execute_script(f"explorer.pick(0, '{quantity}', {int(unit)})")
            driver.execute_script(
                f"document.querySelector('#text span[data-i=\"{int(step)}\"]')"
                ".scrollIntoView({block: 'start'})"
            )
        out = DOCS / f"explore-{path.name}{'-unit' + pick[0] if pick else ''}.png"
    driver.save_screenshot(str(out))
    return out


if __name__ == "__main__":
    driver = browser()
    try:
        for spec in sys.argv[1:]:
            print("wrote", shoot(driver, spec))
    finally:
        driver.quit()
