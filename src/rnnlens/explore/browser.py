"""A headless Chromium driven by Selenium, for the explorer's tests and benchmark (not needed to use it).

Needs Debian's `chromium` and `chromium-driver` (apt-get install -y --no-install-recommends chromium
chromium-driver) and selenium (the `dev` extra). Selenium is pointed at the system chromedriver, so it never
downloads a browser or a driver.
"""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage")


def find_chromium():
    """-> (chromium, chromedriver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(width=1500, height=900):
    """A fresh headless Chromium (its own temporary profile) that records the console, with a page (viewport) of
    width x height CSS pixels at one device pixel per CSS pixel; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are not installed; run `apt-get install -y "
                           "--no-install-recommends chromium chromium-driver`")
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="rnnlens-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        # the window size includes the browser's own bars; the page gets exactly width x height
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                      "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until_ready(driver, timeout=30):
    """Wait for the explorer's first render; raises with the page's own error message if it failed."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return window.rnnlensExplorer && (window.rnnlensExplorer.ready || "
                                   "window.rnnlensExplorer.error || false)"))
    error = driver.execute_script("return window.rnnlensExplorer.error || null")
    if error:
        raise RuntimeError(f"the explorer failed to start: {error}")


def severe_console_messages(driver):
    return [entry for entry in driver.get_log("browser") if entry.get("level") in ("SEVERE", "ERROR")]
