"""The browser half of scripts/console-e2e: real headless Chromium through selenium (WebDriver).

Selectors are the ids and classes the console's pages carry (Sources/TenantryHummingbird/Console/,
docs/console.md): form#login, table#tenants rows with data-tenant, #phase-counts, input#filter,
#relay-applied and data-live elements, #live-status, the tenant page's #tenant-phase /
ol#timeline / #latency-chart, form[data-action], form#confirm, #job-state.
"""
import os
import re
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from console_e2e_setup import EXPECTED_PHASES, LOAD_SHOP, VERIFY_SHOP, SetupError, step

WIDTH, HEIGHT = 1280, 900
COOKIE = "tenantry_console"


class PageError(SetupError):
    """A page lacked what the next step needs (waited in vain); the message names it and the URL."""


def start_browser(options):
    chrome = webdriver.ChromeOptions()
    chrome.binary_location = options.chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--force-device-scale-factor=1",
                     "--lang=en-US"):
        chrome.add_argument(argument)
    chrome.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=chrome, service=Service(options.chromedriver))
    driver.set_page_load_timeout(30)
    # The viewport itself 1280×900 (not the window), so every screenshot has the same size.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    return driver


class Browser:
    def __init__(self, installation, checks, options):
        self.installation, self.checks, self.options = installation, checks, options
        self.driver = start_browser(options)
        self.sources = {}  # page → its HTML as the browser has it, checked for secrets at the end
        self.raw = {}      # request → the body the server sent, likewise

    def close(self):
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass

    # MARK: - Helpers

    def open(self, path):
        self.driver.get(self.installation.base + path)

    def wait(self, condition, seconds=15, what="the page"):
        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.1).until(lambda d: condition(d))
        except TimeoutException:
            raise PageError(f"waited {seconds} s for {what} at {self.driver.current_url}") from None

    def element(self, css, seconds=15):
        return self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, css) and d.find_element(By.CSS_SELECTOR, css),
                         seconds, css)

    def exists(self, css):
        return bool(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css):
        # A job page reloads itself once the job ends: an element found just before may be gone.
        for _ in range(5):
            try:
                found = self.driver.find_elements(By.CSS_SELECTOR, css)
                return found[0].get_attribute("textContent").strip() if found else None
            except StaleElementReferenceException:
                time.sleep(0.1)
        return None

    def keep_source(self, name):
        self.sources[name] = self.driver.page_source

    def screenshot(self, name, whole=False):
        """A PNG of the 1280×900 viewport; `whole`: 1280 wide and as tall as the page (at most 1800)."""
        os.makedirs(self.options.screenshots, exist_ok=True)
        path = os.path.join(self.options.screenshots, name)
        self.driver.execute_script("window.scrollTo(0, 0)")
        height = HEIGHT
        if whole:
            height = min(max(self.driver.execute_script("return document.documentElement.scrollHeight"), HEIGHT), 1800)
            self.viewport(height)
        try:  # between two live updates: no value flashing (class "changed") in the picture
            self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, ".changed"), 3, "no .changed")
        except SetupError:
            pass
        self.driver.save_screenshot(path)
        if height != HEIGHT:
            self.viewport(HEIGHT)
        step(f"screenshot {path}")

    def viewport(self, height):
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def cookie_header(self):
        cookie = self.driver.get_cookie(COOKIE)
        return f"{COOKIE}={cookie['value']}" if cookie else None

    def live(self):
        """Waits for #live-status to say live (the EventSource is connected)."""
        self.wait(lambda d: (self.text("#live-status") or "").lower() == "live", 15, "#live-status 'live'")

    # MARK: - The checks, in the order a person goes

    def login(self):
        step("log in (GET /console/login)")
        self.open("/console")
        self.checks.check("without a session /console leads to the login form",
                          "/console/login" in self.driver.current_url and self.exists("form#login"),
                          self.driver.current_url)
        self.open("/console/login")
        self.keep_source("login")
        # The form as the browser would send it, but with a wrong token: its status.
        status = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const form = document.querySelector('form#login');"
            "const data = new URLSearchParams(new FormData(form)); data.set('token', arguments[0]);"
            "fetch(form.action, {method: 'POST', body: data, redirect: 'manual'}).then(r => done(r.status))"
            ".catch(e => done(String(e)))", "not-the-token-" + "x" * 20)
        self.open("/console/login")
        self.element("input[name=token]").send_keys("not-the-token-" + "y" * 20)
        self.element("#login-submit").click()
        self.element(".error")
        self.checks.check("a wrong token is refused (401, an .error shown, no session)",
                          status == 401 and self.driver.get_cookie(COOKIE) is None,
                          f"POST answered {status}, error {self.text('.error')!r}")
        self.open("/console/login")
        field = self.element("input[name=token]")
        self.checks.check("the token field is a password field", field.get_attribute("type") == "password")
        field.send_keys(self.installation.admin_token)
        for operator in self.driver.find_elements(By.CSS_SELECTOR, "input[name=operator]"):
            operator.send_keys("console-e2e")
        self.element("#login-submit").click()
        self.wait(lambda d: d.current_url.rstrip("/").endswith("/console"), 15, "/console after login")
        cookie = self.driver.get_cookie(COOKIE) or {}
        self.checks.check("the admin token logs in: /console with an HttpOnly, SameSite=Strict session cookie",
                          cookie.get("httpOnly") is True and cookie.get("sameSite") == "Strict",
                          f"cookie {({k: v for k, v in cookie.items() if k != 'value'})}")

    def fleet(self):
        step("the fleet (GET /console)")
        self.element("table#tenants tbody tr[data-tenant]")
        rows = {row.get_attribute("data-tenant"): row
                for row in self.driver.find_elements(By.CSS_SELECTOR, "table#tenants tbody tr[data-tenant]")}
        shown = {tenant: (self.cell(row, "td.phase") or "").lower() for tenant, row in rows.items()}
        listed = self.installation.phases()  # `tenantry tenants`: "1: active, placement shared, phase syncing, …"
        self.checks.check("the fleet lists every shop with its phase, as tenantry tenants does (and the set-up made)",
                          listed == EXPECTED_PHASES and set(shown) == set(listed)
                          and all(phase in shown[tenant] for tenant, phase in listed.items()),
                          f"page {shown}, tenantry tenants {listed}")
        by_phase = self.installation.json("status")["byPhase"]
        counts = {}
        for element in self.driver.find_elements(By.CSS_SELECTOR, "#phase-counts [data-phase]"):
            count = element.find_elements(By.CSS_SELECTOR, ".count")
            counts[element.get_attribute("data-phase")] = count[0].get_attribute("textContent").strip() if count else None
        self.checks.check("the phase counts match tenantry status --json",
                          all(counts.get(phase) == str(n) for phase, n in by_phase.items()),
                          f"page {counts}, status {by_phase}")
        servers = {t["id"]: t.get("server") for t in self.installation.json("tenants")["tenants"]}
        wrong = {t: self.cell(rows[t], "td.server") for t, server in servers.items()
                 if server and t in rows and server not in (self.cell(rows[t], "td.server") or "")}
        self.checks.check("each shop's server matches tenantry tenants --json", not wrong, f"differ: {wrong}")
        for cell in ("td.queue", "td.lag", "td.dead"):
            self.checks.check(f"each row has {cell}", all(row.find_elements(By.CSS_SELECTOR, cell) for row in rows.values()))
        self.checks.check("the servers and the read policy are shown",
                          self.exists("table#servers") and "tenant" in (self.text("#read-policy") or "").lower(),
                          f"read policy {self.text('#read-policy')!r}")
        links = [a.get_attribute("href") for a in self.driver.find_elements(By.CSS_SELECTOR, "a[href^='/console/tenants/']")]
        self.checks.check("every shop links to its page", len(set(links)) >= len(EXPECTED_PHASES), f"{len(set(links))} links")
        self.live()
        self.keep_source("fleet")
        self.screenshot("fleet.png")

    @staticmethod
    def cell(row, css):
        found = row.find_elements(By.CSS_SELECTOR, css)
        return found[0].get_attribute("textContent").strip() if found else None

    def filter(self):
        step("filter the fleet (input#filter)")
        box = self.element("input#filter")
        box.clear()
        box.send_keys("syncing")
        syncing = {t for t, p in EXPECTED_PHASES.items() if p == "syncing"}
        self.wait(lambda d: self.visible_rows() == syncing, 5, "only the syncing rows")
        self.checks.check("typing 'syncing' in the filter hides the other rows", True, f"visible {sorted(syncing)}")
        box.send_keys("\b" * len("syncing"))
        self.wait(lambda d: self.visible_rows() == set(EXPECTED_PHASES), 5, "every row again")
        self.checks.check("clearing the filter shows every row again", True)

    def visible_rows(self):
        return {row.get_attribute("data-tenant") for row in
                self.driver.find_elements(By.CSS_SELECTOR, "table#tenants tbody tr[data-tenant]") if row.is_displayed()}

    def live_number(self):
        step(f"watch #relay-applied while the load writes to shop {LOAD_SHOP}")
        self.driver.execute_script("window.__consoleE2E = 'not reloaded'")
        first = self.number(self.text("#relay-applied"))
        changed = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = self.number(self.text("#relay-applied"))
            if first is not None and now is not None and now > first:
                changed = now
                break
            time.sleep(0.25)
        marker = self.driver.execute_script("return window.__consoleE2E")
        self.checks.check("the relay's applied count rises live, without a reload",
                          changed is not None and marker == "not reloaded",
                          f"#relay-applied {first} → {changed if changed is not None else self.text('#relay-applied')}, "
                          f"page {'kept' if marker else 'reloaded'}")

    @staticmethod
    def number(text):
        digits = re.sub(r"[^0-9]", "", text or "")
        return int(digits) if digits else None

    def tenant(self):
        step(f"open shop {LOAD_SHOP} from the fleet")
        self.element(f"a[href='/console/tenants/{LOAD_SHOP}']").click()
        self.wait(lambda d: d.current_url.endswith(f"/console/tenants/{LOAD_SHOP}"), 15, "the tenant page")
        phase = (self.text("#tenant-phase") or "").lower()
        self.checks.check("the tenant page shows its phase", EXPECTED_PHASES[LOAD_SHOP] in phase, f"#tenant-phase {phase!r}")
        events = [li.get_attribute("textContent").strip() for li in self.driver.find_elements(By.CSS_SELECTOR, "ol#timeline li")]
        self.checks.check("the tenant page shows its phase timeline", len(events) >= 3, f"{len(events)} entries")
        for css in ("#rows-copied", "#queue-depth", "#lag", "#dead-letters", "#latency-chart"):
            self.checks.check(f"the tenant page shows {css}", self.exists(css))
        self.checks.check("the latency chart is an inline SVG",
                          self.driver.execute_script("const e = document.querySelector('#latency-chart');"
                                                     "return !!e && (e.tagName.toLowerCase() === 'svg' || !!e.querySelector('svg'))"))
        self.live()
        watched = "#queue-depth, #lag, #relay-applied"
        read = ("return Array.from(document.querySelectorAll(arguments[0])).map(e => e.id + '=' + e.textContent.trim())"
                ".join(', ')")
        first = self.driver.execute_script(read, watched)
        try:
            self.wait(lambda d: d.execute_script(read, watched) != first, 15, "a live number on the tenant page")
        except SetupError:
            pass
        now = self.driver.execute_script(read, watched)
        self.checks.check("a live number on the tenant page changes while the relay applies the load", now != first,
                          f"{first} → {now}")
        time.sleep(2)  # a few more samples for the lag chart in the screenshot
        self.keep_source("tenant")
        self.screenshot("tenant.png", whole=True)

    def verify(self):
        step(f"verify shop {VERIFY_SHOP} through the confirmation")
        self.open(f"/console/tenants/{VERIFY_SHOP}")
        form = self.element("form[data-action='verify']")
        self.checks.check("the verify form posts to /console/actions/verify with csrf and tenants",
                          form.get_attribute("action").endswith("/console/actions/verify")
                          and form.find_elements(By.CSS_SELECTOR, "input[name=csrf]")
                          and form.find_elements(By.CSS_SELECTOR, "input[name=tenants]"))
        jobs_before = len(self.installation.api("/api/superadmin/jobs").get("jobs", []))
        form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit], button").click()
        self.element("form#confirm")
        self.checks.check("an action first asks for confirmation",
                          len(self.installation.api("/api/superadmin/jobs").get("jobs", [])) == jobs_before,
                          "no job before the confirmation")
        self.keep_source("confirm")
        self.element("#confirm-submit").click()
        self.wait(lambda d: "/console/jobs/" in d.current_url, 15, "the job page")
        job_url = self.driver.current_url
        first = self.text("#job-state")
        state = self.wait(lambda d: (self.text("#job-state") or "").lower() in ("succeeded", "failed") and self.text("#job-state").lower(),
                          60, "#job-state succeeded or failed")
        self.checks.check(f"the verify of syncing shop {VERIFY_SHOP} ends succeeded on its job page",
                          state == "succeeded", f"#job-state {first!r} when the page loaded, then {state!r}, at {job_url}; "
                          f"#job-progress {self.text('#job-progress')!r}")
        self.checks.check("the job page shows #job-progress", self.exists("#job-progress"))
        actor = self.installation.audit(
            "SELECT actor FROM tenantry.audit_log WHERE action LIKE '%verify%' AND tenant_id = "
            f"'{VERIFY_SHOP}' AND actor LIKE 'console:%' ORDER BY id DESC LIMIT 1")
        self.checks.check("the verify is audited for the shop with the operator's name", "console-e2e" in actor,
                          f"actor {actor!r}")
        self.keep_source("job")
        self.screenshot("job.png")
        return job_url

    def csrf(self):
        step("an action without its CSRF token, from the logged-in page")
        jobs_before = len(self.installation.api("/api/superadmin/jobs").get("jobs", []))
        audit_before = int(self.installation.audit("SELECT coalesce(max(id), 0) FROM tenantry.audit_log"))
        results = {}
        for name, body in (("without csrf", f"tenants={VERIFY_SHOP}"), ("with a wrong csrf", f"tenants={VERIFY_SHOP}&csrf=forged")):
            results[name] = self.driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "fetch('/console/actions/verify', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
                " body: arguments[0], redirect: 'manual'}).then(r => r.text().then(t => done([r.status, t])))"
                ".catch(e => done([0, String(e)]))", body)
        for name, (status, text) in results.items():
            plain = re.sub(r"<[^>]+>|\s+", " ", text).strip()[:120]
            self.checks.check(f"POST /console/actions/verify {name} is refused 403 naming the CSRF token",
                              status == 403 and re.search(r"csrf", text, re.I) and re.search(r"missing|invalid", text, re.I),
                              f"got {status}: {plain!r}")
        time.sleep(1)
        jobs_after = len(self.installation.api("/api/superadmin/jobs").get("jobs", []))
        changed = self.installation.audit(
            f"SELECT count(*) FROM tenantry.audit_log WHERE id > {audit_before} AND outcome <> 'refused'")
        self.checks.check("the refused POSTs changed nothing (no job, no audited action)",
                          jobs_after == jobs_before and changed == "0",
                          f"jobs {jobs_before} → {jobs_after}, new audit entries not refused: {changed}")

    def performance(self):
        step("performance (GET /console/performance)")
        self.open("/console/performance")
        self.element("table#targets")
        self.checks.check("the performance page shows the targets table and an SVG histogram",
                          self.driver.execute_script("const e = document.querySelector('#histogram');"
                                                     "return !!e && (e.tagName.toLowerCase() === 'svg' || !!e.querySelector('svg'))"))
        self.keep_source("performance")

    def raw_pages(self, job_url):
        """Pages as the server sends them (headers, HTML, a few seconds of the live stream)."""
        cookie = self.cookie_header()
        pages = {}
        for path in ("/console/login", "/console", f"/console/tenants/{LOAD_SHOP}", "/console/performance",
                     job_url.replace(self.installation.base, "") if job_url else None):
            if path:  # the login page without the session (with it, it sends the browser to /console)
                pages[path] = self.installation.http("GET", path, cookie=None if path == "/console/login" else cookie)
        for path, (status, headers, _) in pages.items():
            policy = headers.get("Content-Security-Policy") or ""
            directives = {d.strip().split(" ")[0]: d.strip() for d in policy.split(";") if d.strip()}
            scripts = directives.get("script-src") or directives.get("default-src") or ""
            self.checks.check(f"{path}: a Content-Security-Policy without 'unsafe-inline' for scripts",
                              status == 200 and bool(scripts) and "'unsafe-inline'" not in scripts,
                              f"status {status}, script policy {scripts!r}")
        events = self.installation.read_events(cookie, seconds=3)
        self.checks.check("the live stream sends updates", "data:" in events, f"{len(events)} bytes in 3 s")
        self.raw = {f"GET {k}": v[2] for k, v in pages.items()}
        self.raw["GET /console/events"] = events

    def no_secrets(self):
        texts = {f"page {k}": v for k, v in self.sources.items()}
        texts.update(self.raw)
        leaks = [f"{secret} in {where}" for where, text in texts.items()
                 for secret, value in self.installation.secrets.items() if value and value in text]
        self.checks.check("no secret (the tokens, the database password, the encryption key) in any page or event",
                          not leaks, "; ".join(leaks) or f"{len(texts)} pages and streams read")

    def logout_and_viewer(self):
        step("log out; log in with the viewer token (read-only)")
        self.open("/console")
        self.element("form[action='/console/logout'] button").click()
        self.wait(lambda d: "/console/login" in d.current_url, 15, "the login page after logging out")
        self.open("/console")
        self.checks.check("after logging out, /console leads to the login form again",
                          "/console/login" in self.driver.current_url, self.driver.current_url)
        self.element("input[name=token]").send_keys(self.installation.viewer_token)
        self.element("#login-submit").click()
        self.wait(lambda d: d.current_url.rstrip("/").endswith("/console"), 15, "/console after the viewer's login")
        self.element("table#tenants tbody tr[data-tenant]")
        self.checks.check("the viewer sees the fleet without action buttons",
                          not self.exists("#fleet-actions, [data-action]"))
        self.open(f"/console/tenants/{LOAD_SHOP}")
        self.element("#tenant-phase")
        self.checks.check("the viewer sees a tenant without action forms", not self.exists("form[data-action]"))
        csrf = self.driver.execute_script("const e = document.querySelector('input[name=csrf]'); return e ? e.value : ''")
        status, text = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/console/actions/verify', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
            " body: arguments[0], redirect: 'manual'}).then(r => r.text().then(t => done([r.status, t])))"
            ".catch(e => done([0, String(e)]))", f"tenants={VERIFY_SHOP}&csrf={csrf}")
        self.checks.check("the viewer's action (with its own CSRF token) is refused 403", status == 403 and bool(csrf),
                          f"got {status}, csrf {'found' if csrf else 'missing'}")
        self.keep_source("viewer tenant")

    def console_errors(self):
        entries = [e for e in self.driver.get_log("browser")
                   if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")
                   and not re.search(r"/console/actions/verify .*403|/console/login .*401", e.get("message", ""))]
        self.checks.check("no JavaScript error or CSP violation in the browser's console", not entries,
                          "; ".join(e["message"][:160] for e in entries[:3]))


def browser_checks(installation, checks, options):
    step("headless Chromium")
    for stale in ("failure.png", "failure.html"):
        if os.path.exists(os.path.join(options.screenshots, stale)):
            os.remove(os.path.join(options.screenshots, stale))
    browser = Browser(installation, checks, options)
    try:
        browser.login()
        browser.fleet()
        browser.filter()
        browser.live_number()
        browser.tenant()
        job_url = browser.verify()
        browser.csrf()
        browser.performance()
        browser.raw_pages(job_url)
        browser.logout_and_viewer()
        browser.no_secrets()
        browser.console_errors()
    except Exception:
        try:  # what the browser showed when it went wrong, for the log reader
            browser.screenshot("failure.png", whole=True)
            with open(os.path.join(options.screenshots, "failure.html"), "w") as file:
                file.write(browser.driver.page_source)
        except Exception:  # noqa: BLE001 - the original error matters
            pass
        raise
    finally:
        browser.close()
