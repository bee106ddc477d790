"""The review page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) on the page of a real ``duet serve`` process, with a
real scientist process asking. ``DUET_SCREENSHOTS=docs`` also writes the screenshots the README
shows into docs/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_digits

from duet.owner.audit import AuditLog

from .peers.reviewed import NAME
from .processes import UNIT, Process, start_signaling_server

REVIEWED = str(Path(__file__).parent / "peers" / "reviewed.py")
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DOCS = Path(__file__).parent.parent / "docs"


def chromium():
    """Headless Chromium. Missing, the test fails (CI installs it: .ci/run)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"the review page's browser test needs Debian's chromium and chromium-driver "
            f"({', '.join(missing)} missing): apt-get install -y chromium chromium-driver "
            "(.ci/run installs them)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1200,1500",
                     "--disable-gpu", "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(UNIT)
    return browser


def until(browser, condition, timeout=2 * UNIT):
    """``condition(browser)`` once it is true (the page re-renders what changed as it goes: an
    element found a moment ago may be gone, so a condition is tried again until it holds)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, timeout, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition)


def press(browser, request_id: str, button: str) -> None:
    """Press a request's Accept or Deny button, as the owner would."""
    from selenium.webdriver.common.by import By

    selector = f'article[data-request="{request_id}"] button.{button}'
    until(browser, lambda b: b.find_element(By.CSS_SELECTOR, selector).click() or True)


def status_of(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=UNIT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def screenshot(browser, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert browser.save_screenshot(str(path)), "the browser took no screenshot"
    if os.environ.get("DUET_SCREENSHOTS") == "docs":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / name)


def test_the_owner_decides_a_real_scientists_requests_on_the_page_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    digits = load_digits()
    frame = pd.DataFrame(digits.data / 16.0, columns=[f"p{i}" for i in range(64)])
    frame["label"] = digits.target
    frame.to_csv(tmp_path / "digits.csv", index=False)
    server, url = start_signaling_server()
    (tmp_path / "node.toml").write_text(
        textwrap.dedent(f"""
        [owner]
        signaling_url = "{url}"
        unknown = "accept"
        audit = "audit.sqlite3"

        [[publish]]
        path = "digits.csv"
        target = "label"
        tags = ["digits"]
        description = "scikit-learn's digits <b>8x8</b>"

        [[handler]]
        tags = ["digits", "__len__"]
        action = "accept"
        """)
    )
    node = Process("-m", "duet", "serve", str(tmp_path / "node.toml"), stdin=False,
                   home=str(tmp_path / "node-home"))  # fmt: skip
    started = [server, node]
    browser = None
    try:
        node.line(r"a request no handler decides waits up to 600 s for you on the review page",
                  2 * UNIT)  # fmt: skip
        page = node.line(r"(http://127\.0\.0\.1:(\d+)/([A-Za-z0-9_-]{40,})/)")
        page_url, port, token = page.group(1), page.group(2), page.group(3)
        session_id = node.line(r"duet session ID: ([0-9a-f]+)").group(1)
        owner_id = node.line(r'owner_id="([0-9a-f-]+)"').group(1)
        origin = f"http://127.0.0.1:{port}"

        # no token, or a wrong one: no page, no events, no state
        for path in ("/", f"/{token[:-1]}x/", f"/{token}x/state", "/events", "/state"):
            assert status_of(origin + path) == 404, path
        assert status_of(page_url) == 200

        browser = chromium()
        browser.get(f"{origin}/not-the-token/")
        assert "Not Found" in browser.page_source and not browser.find_elements(By.ID, "state")
        browser.get(page_url)
        until(browser, lambda b: b.find_element(By.ID, "live").text == "live")
        assert "No request is waiting for you." in browser.find_element(By.ID, "pending").text
        assert "scikit-learn's digits <b>8x8</b>" in browser.find_element(By.ID, "store").text

        scientist = Process(REVIEWED, session_id, url, owner_id, "--name", "Ada")
        started.append(scientist)
        scientist.event("event", "trained", 4 * UNIT)
        # the request appears without a reload, with what it would release
        card = until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "article.request"))[0]
        text = card.text
        assert '"model" from "Ada" (claimed)' in text and '"evaluate it"' in text
        assert "a module: 650 elements" in text and "digits" in text
        assert browser.title == "(1) duet · review"  # the tab says something waits
        connected = browser.find_element(By.ID, "scientists").text
        assert '"Ada" (claimed)' in connected
        screenshot(browser, tmp_path, "review-page.png")
        press(browser, card.get_attribute("data-request"), "accept")
        model = scientist.event("event", "model", 2 * UNIT)
        assert model["released"] and model["accuracy"] > 0.5  # the trained model, released
        until(browser, lambda b: "accepted" in b.find_element(By.ID, "notice").text)
        until(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "article.request"))

        # a second request, under a hostile name and reason: shown as text, then denied
        scientist.send("next")
        card = until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "article.request"))[0]
        shown_name = card.find_element(By.CSS_SELECTOR, "h3 .said").text
        assert shown_name == '"' + NAME.replace('"', '\\"') + '"'
        shown_reason = card.find_element(By.CSS_SELECTOR, ".reason .said").text
        assert shown_reason == '"see\\nhere\\x1b[31m red \\u202e</span><b>bold</b>"'
        assert "\x1b" not in browser.page_source and "\u202e" not in browser.page_source
        assert browser.execute_script("return window.pwned === undefined")  # nothing ran
        assert not browser.find_elements(By.CSS_SELECTOR, "#state script, #state img, #state b b")

        # decisions without the token, or from another site, decide nothing
        request_id = card.get_attribute("data-request")
        deny = f"/requests/{request_id}/deny"
        assert status_of(origin + deny, method="POST", headers={"Origin": origin}) == 404
        wrong = f"{origin}/{token[:-2]}xy{deny}"
        assert status_of(wrong, method="POST", headers={"Origin": origin}) == 404
        foreign = {"Origin": "http://evil.example", "X-Duet-Review": "1"}
        assert status_of(page_url + deny[1:], method="POST", headers=foreign) == 403
        browser.refresh()
        until(browser, lambda b: b.find_element(By.ID, "live").text == "live")
        assert browser.find_element(By.CSS_SELECTOR, f'article[data-request="{request_id}"]')
        screenshot(browser, tmp_path, "review-page-hostile-request.png")
        press(browser, request_id, "deny")
        answer = scientist.event("event", "answer", 2 * UNIT)
        assert answer["value"] is None
        assert any("was denied by the owner" in w for w in answer["warnings"])
        until(browser, lambda b: "denied" in b.find_element(By.ID, "notice").text)
        audit = until(browser, lambda b: re.search(r"denied .* by owner \(review page\)",
                                                   b.find_element(By.ID, "audit").text))  # fmt: skip
        assert audit
        scientist.event("event", "left", UNIT)
        screenshot(browser, tmp_path, "review-page-decided.png")

        node.popen.send_signal(signal.SIGTERM)
        assert node.exit_code(UNIT) == 0, "".join(node.errors)[-4000:]
        until(browser, lambda b: "session closed" in b.find_element(By.ID, "live").text)
    finally:
        if browser is not None:
            browser.quit()
        for process in reversed(started):
            process.stop()
    log = AuditLog(tmp_path / "audit.sqlite3")
    decided = [(e["request_name"], e["status"], e["decided_by"]) for e in log.events("decision")]
    decided = [d for d in decided if d[2] != "handler 1"]
    assert decided == [("model", "accepted", "owner (review page)"),
                       (NAME, "denied", "owner (review page)")]  # fmt: skip


def test_without_chromium_the_browser_test_fails_saying_what_to_install(monkeypatch):
    from . import test_review_browser

    monkeypatch.setattr(test_review_browser, "CHROMIUM", Path("/nonexistent/chromium"))
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium chromium-driver"):
        chromium()
