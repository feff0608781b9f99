"""Home Assistant's real web UI in headless Chromium, driven with Selenium.

Home Assistant's frontend is built from web components, each with its own shadow root, so the
usual locators do not reach into it. :class:`Browser` looks through every shadow root: for the
text a user sees, for a button or list item by its label, and for a form field by its label.
"""

from collections.abc import Callable
import json
from pathlib import Path
import time
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Every text node through every open shadow root, in document order; skips styles, scripts
# and elements hidden with display:none.
_TEXT_JS = """
const out = [];
const walk = (node) => {
  if (node.nodeType === Node.TEXT_NODE) {
    const text = node.nodeValue.trim();
    if (text) out.push(text);
    return;
  }
  if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== Node.DOCUMENT_FRAGMENT_NODE
      && node.nodeType !== Node.DOCUMENT_NODE) return;
  if (node.nodeType === Node.ELEMENT_NODE) {
    const tag = node.localName;
    if (tag === "style" || tag === "script" || tag === "template") return;
    if (getComputedStyle(node).display === "none") return;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const attr of ["label", "heading", "title"]) {
      const value = node.getAttribute && node.getAttribute(attr);
      if (value && tag.includes("-")) out.push(value.trim());
    }
  }
  for (const child of node.childNodes) walk(child);
};
walk(document);
return out.join("\\n");
"""

# All elements matching a CSS selector through every shadow root.
_DEEP_JS = """
const deep = (selector) => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll(selector)) found.push(el);
    for (const el of root.querySelectorAll("*")) if (el.shadowRoot) walk(el.shadowRoot);
  };
  walk(document);
  return found;
};
"""

# The innermost clickable element whose own text is the given label (trimmed).
_CLICK_JS = (
    _DEEP_JS
    + r"""
const label = arguments[0];
const clickable = "button, a, ha-button, mwc-button, ha-list-item, ha-md-list-item, "
  + "mwc-list-item, ha-clickable-list-item, ha-integration-list-item, paper-item, "
  + "ha-progress-button, ha-icon-button, md-text-button, md-filled-button, [role=button], "
  + "ha-md-menu-item, ha-dialog-header, ha-menu-button, [role=menuitem], [role=option]";
// textContent, not innerText: buttons often show their label in capitals.
const norm = (t) => (t || "").replace(/\s+/g, " ").trim().toLowerCase();
const wanted = norm(label);
const candidates = deep(clickable).filter((el) =>
  norm(el.textContent) === wanted
  || norm(el.getAttribute("label")) === wanted
  || norm(el.getAttribute("aria-label")) === wanted
  || (el.shadowRoot && norm(el.shadowRoot.textContent) === wanted));
// A collapsed section: its header is slotted in, and its summary row is what one clicks.
for (const panel of deep("ha-expansion-panel")) {
  const head = panel.querySelector(':scope > [slot="header"]');
  if (norm(head ? head.textContent : panel.header) === wanted && !panel.expanded) {
    panel.shadowRoot.getElementById("summary").click();
    return true;
  }
}
if (candidates.length) {
  // The last one is the innermost (deep() finds outer elements first) and topmost dialog.
  candidates[candidates.length - 1].click();
  return true;
}
// A list item whose label is one line among others (a repair issue and its integration):
// the smallest clickable holding the label.
const holding = deep(clickable).filter((el) => norm(el.textContent).includes(wanted));
if (!holding.length) return false;
holding.sort((a, b) => norm(a.textContent).length - norm(b.textContent).length);
holding[0].click();
return true;
"""
)

# Set a form field found by its label, the way typing would (input and change events).
_FILL_JS = (
    _DEEP_JS
    + """
const [label, value] = arguments;
const fields = deep("ha-textfield, mwc-textfield, ha-textarea, ha-password-field")
  .filter((el) => (el.label || "").replace(/\\*$/, "").trim() === label);
if (!fields.length) return false;
const field = fields[fields.length - 1];
field.value = value;
field.dispatchEvent(new Event("input", { bubbles: true, composed: true }));
field.dispatchEvent(new Event("change", { bubbles: true, composed: true }));
return true;
"""
)


class Browser:
    """One headless Chromium with its own profile, saving screenshots into a folder."""

    def __init__(self, screenshots: Path, *, width: int = 1280, height: int = 1400) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--window-size={width},{height}",
        ):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.screenshots = screenshots
        screenshots.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []

    def close(self) -> None:
        self.driver.quit()

    def sign_in(self, base: str, tokens: dict[str, Any]) -> None:
        """Store the frontend's tokens (as its login page would), then open Home Assistant."""
        self.driver.get(f"{base}/auth/authorize")
        self.driver.execute_script(
            "localStorage.setItem('hassTokens', arguments[0]);", json.dumps(tokens)
        )

    def set_local(self, key: str, value: Any) -> None:
        self.driver.execute_script(
            "localStorage.setItem(arguments[0], arguments[1]);", key, json.dumps(value)
        )

    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        """What the page shows, through every shadow root."""
        return str(self.driver.execute_script(_TEXT_JS))

    def wait_for_text(self, *wanted: str, within: float = 60.0) -> str:
        """Wait until every one of ``wanted`` is shown; the page's text."""
        return self._wait(lambda text: all(w in text for w in wanted), wanted, within)

    def wait_for_any(self, *wanted: str, within: float = 60.0) -> str:
        """Wait until one of ``wanted`` is shown; the page's text."""
        return self._wait(lambda text: any(w in text for w in wanted), wanted, within)

    def _wait(self, done: Callable[[str], bool], wanted: Any, within: float) -> str:
        deadline = time.monotonic() + within
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if done(text):
                return text
            time.sleep(0.3)
        shot = self.screenshot("timeout")
        raise AssertionError(f"{wanted!r} not shown within {within} s ({shot}); page:\n{text}")

    def click(self, label: str, within: float = 30.0) -> None:
        """Click the button, link or list item labelled ``label``."""
        deadline = time.monotonic() + within
        while not self.driver.execute_script(_CLICK_JS, label):
            if time.monotonic() > deadline:
                shot = self.screenshot("no_button")
                raise AssertionError(
                    f"nothing labelled {label!r} to click ({shot}):\n{self.text()}"
                )
            time.sleep(0.3)
        time.sleep(0.5)

    def fill(self, label: str, value: str, within: float = 30.0) -> None:
        """Type ``value`` into the field labelled ``label``."""
        deadline = time.monotonic() + within
        while not self.driver.execute_script(_FILL_JS, label, value):
            if time.monotonic() > deadline:
                shot = self.screenshot("no_field")
                raise AssertionError(f"no field labelled {label!r} ({shot}):\n{self.text()}")
            time.sleep(0.3)

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{len(self.saved) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.saved.append(path)
        return path
