#!/usr/bin/env python3
"""scripts/console-e2e: the operator's console in real headless Chromium, as a person uses it.

Run through scripts/console-e2e (it installs Chromium, chromium-driver and selenium). The
installation (console_e2e_setup.py) is a small HandyShop in the middle of a move; `tenantry serve`
runs the console, the admin API and the relay; a write load inserts rows for a syncing shop while
the browser watches. Each check prints PASS or FAIL; the exit status is 1 on any FAIL.
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from console_e2e_setup import Installation, SetupError, step  # noqa: E402


class Checks:
    """PASS/FAIL lines, counted."""

    def __init__(self):
        self.failed = []
        self.passed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"console-e2e: PASS {name}" + (f" ({detail})" if detail else ""), flush=True)
        else:
            self.failed.append(name)
            print(f"console-e2e: FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def api_checks(installation, checks):
    """The admin API answers with the token (and only with it), and the relay applies the load."""
    status, _, _ = installation.http("GET", "/api/superadmin/migration/status")
    checks.check("admin API refuses a request without the token", status == 401, f"got {status}")
    state = installation.api("/api/superadmin/migration/status")
    checks.check("admin API status shows the fleet mid-move", state.get("byPhase", {}).get("syncing") == 2,
                 f"byPhase {state.get('byPhase')}")
    relay = state.get("relay") or {}
    checks.check("the relay runs in serve", bool(relay), f"relay {relay}")


def relay_applied(installation):
    relay = installation.api("/api/superadmin/migration/status").get("relay") or {}
    for key in ("applied", "appliedChanges", "changesApplied"):
        if key in relay:
            return relay[key]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenantry", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    parser.add_argument("--screenshots", default=".build/console-e2e/screenshots",
                        help="where fleet.png, tenant.png and job.png go (docs/console refreshes the README's)")
    parser.add_argument("--keep", action="store_true", help="leave the installation and serve running")
    parser.add_argument("--setup-only", action="store_true", help="the installation, serve and API checks, no browser")
    options = parser.parse_args()

    # SIGTERM (e.g. a CI timeout) cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    checks = Checks()
    installation = Installation(options.tenantry, keep=options.keep)
    try:
        installation.make_fleet()
        installation.start_serve()
        api_checks(installation, checks)
        installation.start_load()
        step("the service's sample workload for 3 s (GET /api/superadmin/migration/performance?measureSeconds=3)")
        installation.api("/api/superadmin/migration/performance?measureSeconds=3")
        if options.setup_only:
            before = relay_applied(installation)
            time.sleep(3)
            after = relay_applied(installation)
            checks.check("the relay applies the load (API)", before is not None and after is not None and after > before,
                         f"applied {before} → {after}")
        else:
            from console_e2e_browser import browser_checks
            browser_checks(installation, checks, options)
        failure = installation.load.failed() if installation.load else None
        checks.check("the write load ran without an error", failure is None, failure or f"{installation.load.written} rows")
    except SetupError as error:
        page = type(error).__name__ == "PageError"
        checks.check("the console page has what the next step needs" if page else "set-up", False,
                     str(error) + (f" (screenshot and HTML: {options.screenshots}/failure.*)" if page else ""))
    except KeyboardInterrupt:
        checks.check("finished", False, "interrupted")
    except Exception as error:  # noqa: BLE001 - any other error is a failure with its message
        checks.check("no unexpected error", False, f"{type(error).__name__}: {error}")
    finally:
        step("stopping serve, the load and PostgreSQL")
        installation.stop()
    seconds = time.monotonic() - started
    if checks.failed:
        print(f"console-e2e: {len(checks.failed)} FAILED of {checks.passed + len(checks.failed)} checks "
              f"({seconds:.0f} s): {', '.join(checks.failed)}", flush=True)
        return 1
    print(f"console-e2e: all {checks.passed} checks passed ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
