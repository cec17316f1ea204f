"""What a person sees in a real browser: an admin adds the bot to Slack, then a Slack member signs in with Slack.

Headless Chromium from Debian's packages (`/usr/bin/chromium`, driven through
`/usr/bin/chromedriver` by Selenium; `make test` installs both when missing, see
scripts/ensure_services.sh) against the project served for real by pytest-django's
live server, with Slack's consent pages and Web API stood in for by tests/slack_stub.py.
No browser is downloaded. The test reads the visible text of each page, as a person would.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from products.accounts.models import OrganizationMembership
from products.slack_app.models import Integration

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")


@pytest.fixture
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    assert not missing, f"{missing} not installed: run scripts/ensure_services.sh (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-proxy-server",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def site(live_server, settings, slack_api):
    """The live server is the site Slack sends browsers back to; Slack's pages are the stand-in's."""
    settings.SITE_URL = live_server.url
    settings.BILLING_URL = f"{live_server.url}/billing/"
    settings.SLACK_CLIENT_ID = "1234.5678"
    settings.SLACK_CLIENT_SECRET = "browser-test-secret"
    settings.SLACK_OAUTH_AUTHORIZE_URL = slack_api.authorize_url
    settings.SLACK_OPENID_AUTHORIZE_URL = slack_api.openid_authorize_url
    return live_server.url


def visible_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_heading(driver, text: str) -> None:
    WebDriverWait(driver, 20).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), text))


def test_an_admin_adds_the_bot_to_slack_and_a_member_signs_in_with_slack(browser, site, accounts, slack_api):
    org = accounts.organization(name="Acme")
    project = accounts.project(org, name="Web")
    admin = accounts.user(org, level=OrganizationMembership.Level.ADMIN)

    # The admin opens the install page, is asked to sign in first, and signs in with a password.
    browser.get(f"{site}/slack/install")
    wait_for_heading(browser, "Sign in")
    assert "Sign in with Slack" in visible_text(browser)
    browser.find_element(By.NAME, "username").send_keys(admin.username)
    browser.find_element(By.NAME, "password").send_keys("pw")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()

    # Their project, with its "Add to Slack" button.
    wait_for_heading(browser, "Add the bot to Slack")
    assert "Acme / Web · Add to Slack" in visible_text(browser)
    browser.find_element(By.CSS_SELECTOR, f"#project-{project.pk} a.add-to-slack").click()

    # Slack's consent page (the stand-in approves) sends the browser back: the workspace is connected.
    wait_for_heading(browser, "Slack connected")
    page = visible_text(browser)
    assert "Connected the Slack workspace Stub Workspace to the project Web of Acme." in page
    assert browser.current_url.startswith(f"{site}/slack/oauth/callback?")
    integration = Integration.objects.get(project=project)
    assert integration.integration_id == "T0STUB" and integration.status == Integration.Status.ACTIVE

    # The admin signs out; a member of that Slack workspace signs in with Slack.
    browser.find_element(By.XPATH, "//header//button[normalize-space()='Sign out']").click()
    wait_for_heading(browser, "Sign in")
    browser.find_element(By.LINK_TEXT, "Sign in with Slack").click()

    # They land on their organization's billing page, signed in as their Slack identity.
    wait_for_heading(browser, "Billing")
    page = visible_text(browser)
    assert "Acme" in page and "Not limited" in page and "AI credits used" in page
    assert "slack-t0stub-umember1" in page  # the header names who is signed in
    assert slack_api.calls_to("openid.connect.userInfo")


def test_a_member_who_is_not_an_admin_is_told_so(browser, site, accounts):
    org = accounts.organization(name="Acme")
    accounts.project(org, name="Web")
    member = accounts.user(org)
    browser.get(f"{site}/login/?next=/slack/install")
    browser.find_element(By.NAME, "username").send_keys(member.username)
    browser.find_element(By.NAME, "password").send_keys("pw")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
    wait_for_heading(browser, "Only an organization admin can add the bot to Slack")
    assert "Ask an admin of your organization" in visible_text(browser)
