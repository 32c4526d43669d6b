"""The playground in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium),
against a real server on 127.0.0.1. Skips with the reason when the browser, its driver or selenium is absent.

CI: ``apt-get install -y chromium chromium-driver`` (selenium comes with the test extra). Set
``SQUEEZEBERT_SCREENSHOTS=DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="the server tests need httpx")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from test_serve import QA, checkpoints, running_server  # noqa: E402,F401 (checkpoints: a fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,900"]


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not try to download a driver: we give it one
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    keep = os.environ.get("SQUEEZEBERT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def run_and_wait(driver) -> str:
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 60).until(EC.text_to_be_present_in_element((By.ID, "latency"), " ms"))
    return driver.find_element(By.ID, "latency").text


def test_playground_classifies_and_embeds(browser, checkpoints, tmp_path):
    with running_server(checkpoints["sequence_classification"]) as (_, url):
        browser.get(url + "/")
        WebDriverWait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "model"), "text-classification"))
        tasks = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "task")).options]
        assert tasks == ["text-classification", "feature-extraction"]
        latency = run_and_wait(browser)
        assert latency.startswith("round trip") and "server" in latency
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#output .bar .name")]
        assert sorted(names) == ["negative", "positive"]
        best = browser.find_element(By.CSS_SELECTOR, "#output .bar.best .name").text
        assert best in ("negative", "positive")
        screenshot(browser, tmp_path, "playground-classify")

        Select(browser.find_element(By.ID, "task")).select_by_value("feature-extraction")
        assert not browser.find_element(By.ID, "pair").is_displayed()
        run_and_wait(browser)
        assert "32 dimensions" in browser.find_element(By.ID, "output").text

        Select(browser.find_element(By.ID, "task")).select_by_value("text-classification")
        text = browser.find_element(By.ID, "text")
        text.clear()
        text.send_keys("   ")
        latency = run_and_wait(browser)  # a bad input shows the server's message, not a broken page
        assert "HTTP 422" in latency
        assert "inputs[0] is empty" in browser.find_element(By.CSS_SELECTOR, "#output .error").text


def test_playground_shows_entities_and_answers(browser, checkpoints, tmp_path):
    with running_server(checkpoints["token_classification"]) as (_, url):
        browser.get(url + "/")
        WebDriverWait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "model"), "token-classification"))
        run_and_wait(browser)
        text = browser.find_element(By.ID, "text").get_attribute("value")
        marked = browser.execute_script(
            "return [...document.querySelectorAll('#output mark')].map(m => m.firstChild.textContent)")
        words = [row.find_elements(By.TAG_NAME, "td")[1].text
                 for row in browser.find_elements(By.CSS_SELECTOR, "#output table tr")[1:]]
        assert marked and marked == words  # one highlighted span and one table row per entity
        assert all(word in text for word in words)
        screenshot(browser, tmp_path, "playground-entities")

    with running_server(checkpoints["question_answering"]) as (_, url):
        browser.get(url + "/")
        WebDriverWait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "model"), "question-answering"))
        assert browser.find_element(By.ID, "context").is_displayed()
        for field, value in (("question", QA["question"]), ("context", QA["context"])):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        run_and_wait(browser)
        answer = browser.find_element(By.CSS_SELECTOR, "#output .answer").text
        assert answer and answer in QA["context"]
        assert browser.find_element(By.CSS_SELECTOR, "#output mark").text == answer
        screenshot(browser, tmp_path, "playground-answer")


def test_playground_asks_for_the_api_key(browser, checkpoints, tmp_path):
    key = "playground-key"
    with running_server(checkpoints["sequence_classification"], api_key=key) as (_, url):
        browser.get(url + "/")
        WebDriverWait(browser, 60).until(EC.visibility_of_element_located((By.ID, "key")))
        assert "needs an API key" in browser.find_element(By.ID, "model").text
        box = browser.find_element(By.ID, "key")
        box.send_keys("wrong")
        browser.find_element(By.ID, "use-key").click()
        WebDriverWait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "model"), "not valid"))
        box.clear()
        box.send_keys(key)
        browser.find_element(By.ID, "use-key").click()
        WebDriverWait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "model"), "text-classification"))
        assert not browser.find_element(By.ID, "key").is_displayed()
        latency = run_and_wait(browser)  # the request carries the key
        assert latency.startswith("round trip")
        assert sorted(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#output .bar .name")) == \
            ["negative", "positive"]
        screenshot(browser, tmp_path, "playground-api-key")
