"""The installation scripts/console-e2e drives: a small HandyShop in the middle of a move, made with
the real `tenantry` binary only, `tenantry serve` (console, admin API, relay) and a write load.

Everything started here is recorded and stopped by `Installation.stop()`, which is safe to call
more than once and after a partial start.
"""
import glob
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

SHOPS = 5
# What the set-up leaves each shop in (see Installation.make_fleet).
EXPECTED_PHASES = {"1": "syncing", "2": "syncing", "3": "shared", "4": "dedicated", "5": "retired"}
LOAD_SHOP = "1"      # the shop the load writes to while the browser watches
VERIFY_SHOP = "2"    # the syncing shop the browser verifies

# Variables of the caller's own installation that must not leak into this one.
FOREIGN = re.compile(r"^(DATABASE_URL|TENANTRY_.*|TENANT_.*|POSTGRES_SUPERUSER.*|ENABLE_.*|MIGRATION_STRATEGY|HANDYSHOP_.*)$")


STARTED = time.monotonic()


def step(text):
    print(f"console-e2e: [{time.monotonic() - STARTED:5.1f} s] ▶ {text}", flush=True)


class SetupError(Exception):
    pass


class Installation:
    def __init__(self, tenantry, keep=False):
        self.tenantry = os.path.abspath(tenantry)
        self.keep = keep
        self.workdir = tempfile.mkdtemp(prefix="tenantry-console-e2e-")
        # The embedded PostgreSQL runs as `postgres` when we are root: it must reach its directory.
        os.chmod(self.workdir, 0o755)
        self.tmpdir = os.path.join(self.workdir, "tmp")
        os.makedirs(self.tmpdir, mode=0o755)
        self.env = {k: v for k, v in os.environ.items() if not FOREIGN.match(k)}
        self.env["TMPDIR"] = self.tmpdir  # the demo's archive goes there, removed with the rest
        self.server_started = False
        self.serve = None
        self.serve_log = os.path.join(self.workdir, "serve.log")
        self.load = None
        self.admin_token = secrets.token_hex(24)
        self.viewer_token = secrets.token_hex(24)
        self.url = None            # the unified database (with its password)
        self.base = None           # http://127.0.0.1:PORT

    # MARK: - tenantry

    def run(self, *args, check=True, timeout=180):
        """Runs `tenantry args…` in the work directory; its output, or SetupError on failure."""
        result = subprocess.run([self.tenantry, *args], cwd=self.workdir, env=self.env, text=True,
                                capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise SetupError(f"tenantry {' '.join(args)} exited {result.returncode}:\n{tail}")
        return result

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout.strip().splitlines()[-1])

    def phases(self):
        """Each tenant's phase as `tenantry tenants` lists it."""
        found = re.findall(r"^(\S+): .*?\bphase ([a-z_]+)", self.run("tenants").stdout, re.M)
        return dict(found)

    @property
    def secrets(self):
        """Values that must never appear in a page: the tokens, the database password, the key."""
        values = {"TENANTRY_ADMIN_TOKEN": self.admin_token, "TENANTRY_VIEWER_TOKEN": self.viewer_token,
                  "TENANT_ENCRYPTION_KEY": self.env["TENANT_ENCRYPTION_KEY"]}
        password = urllib.parse.urlparse(self.url).password
        if password:
            values["DATABASE_URL password"] = urllib.parse.unquote(password)
        return values

    # MARK: - The installation

    def make_fleet(self):
        """Five HandyShop shops in every state of a move, with the history a real one has.

        `tenantry demo --keep` makes the HandyShop unified database with generated shops and moves
        them all (provision, migrate-data, cutover, retire-legacy); then `restore-legacy` puts
        their rows back, `rollback` returns shops 1-3 to the unified database, `migrate-data`
        copies shops 1 and 2 afresh (syncing, the relay keeps them current), and shop 5 is retired
        again: 1, 2 syncing; 3 shared; 4 dedicated; 5 retired.
        """
        step("private PostgreSQL (tenantry dev start)")
        self.server_started = True
        server_url = self.run("dev", "start").stdout.strip().splitlines()[-1]
        self.env["TENANT_ENCRYPTION_KEY"] = self.run("keys", "generate").stdout.strip()
        step(f"HandyShop with {SHOPS} shops moved by tenantry demo --keep")
        self.env["DATABASE_URL"] = server_url
        demo = self.run("demo", "--keep", "--shops", str(SHOPS), "--rows-per-shop", "30",
                        "--rate", "10", "--phase-seconds", "0.5")
        found = re.search(r"kept: database (tenantry_demo_[a-z0-9]+)", demo.stderr)
        if not found:
            raise SetupError("tenantry demo did not say which database it kept")
        tag = found.group(1)
        parts = urllib.parse.urlparse(server_url)
        self.url = urllib.parse.urlunparse(parts._replace(path="/" + tag))
        self.env["DATABASE_URL"] = self.url
        archives = glob.glob(os.path.join(self.tmpdir, "tenantry-demo-archive-*", "retire-*"))
        if len(archives) != 1:
            raise SetupError(f"expected one retire archive of the demo, found {archives}")
        step("restore-legacy, then rollback shops 1-3 to unified")
        self.run("restore-legacy", "--archive-dir", archives[0])
        self.run("sync", "run", "--until-caught-up")
        self.run("rollback", "--tenant", "1,2,3")
        step("migrate-data shops 1, 2 (syncing); retire-legacy shop 5 again")
        self.run("migrate-data", "--tenant", "1,2")
        self.run("sync", "run", "--until-caught-up")
        self.run("retire-legacy", "--tenant", "5", "--yes", "--archive-dir", os.path.join(self.workdir, "archives"))
        by_phase = self.json("status")["byPhase"]
        expected = {}
        for phase in EXPECTED_PHASES.values():
            expected[phase] = expected.get(phase, 0) + 1
        if by_phase != expected:
            raise SetupError(f"tenantry status --json byPhase is {by_phase}, expected {expected}")
        step(f"fleet ready: {', '.join(f'{t} {p}' for t, p in EXPECTED_PHASES.items())}")

    # MARK: - tenantry serve

    def start_serve(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.env["TENANTRY_ADMIN_TOKEN"] = self.admin_token
        self.env["TENANTRY_VIEWER_TOKEN"] = self.viewer_token
        step(f"tenantry serve --port {port} (console, admin API, relay)")
        with open(self.serve_log, "wb") as log:
            self.serve = subprocess.Popen([self.tenantry, "serve", "--port", str(port)], cwd=self.workdir,
                                          env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise SetupError(f"tenantry serve exited {self.serve.returncode}: {self.serve_tail()}")
            try:
                if self.http("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SetupError(f"tenantry serve did not answer /health within 30 s: {self.serve_tail()}")

    def serve_tail(self, lines=5):
        try:
            with open(self.serve_log, errors="replace") as log:
                return " | ".join(log.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def http(self, method, path, body=None, headers=None, token=False, cookie=None):
        """(status, headers, body text) of one request to serve; never follows redirects."""
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=dict(headers or {}))
        if token:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        if cookie:
            request.add_header("Cookie", cookie)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=15) as response:
                return response.status, response.headers, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode("utf-8", "replace")

    def read_events(self, cookie, seconds=3):
        """What GET /console/events sends in `seconds` (the live stream), as text."""
        parts = urllib.parse.urlparse(self.base)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=seconds)
        received = b""
        try:
            connection.request("GET", "/console/events", headers={"Cookie": cookie or "", "Accept": "text/event-stream"})
            response = connection.getresponse()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and len(received) < 200_000:
                chunk = response.read1(4096)
                if not chunk:
                    break
                received += chunk
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        return received.decode("utf-8", "replace")

    def api(self, path):
        status, _, text = self.http("GET", path, token=True)
        if status != 200:
            raise SetupError(f"GET {path} answered {status}: {text[:200]}")
        return json.loads(text)

    def audit(self, sql):
        """One value from the catalog (psql)."""
        result = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.url, "-c", sql],
                                text=True, capture_output=True, timeout=30)
        if result.returncode != 0:
            raise SetupError(f"psql failed: {result.stderr.strip()[:200]}")
        return result.stdout.strip()

    # MARK: - The write load

    def start_load(self, per_second=5):
        """Inserts customers of LOAD_SHOP into the unified database (one psql session) until stopped."""
        step(f"write load: {per_second} customers a second for shop {LOAD_SHOP}, into the unified database")
        self.load = WriteLoad(self.url, LOAD_SHOP, per_second)
        self.load.start()

    # MARK: - Stopping

    def stop(self):
        if self.load:
            self.load.stop()
            self.load = None
        if self.keep:
            print(f"console-e2e: kept: {self.workdir} (serve at {self.base}, token {self.admin_token}); "
                  f"stop: kill {self.serve.pid if self.serve else '-'}; cd {self.workdir} && {self.tenantry} dev stop",
                  flush=True)
            return
        if self.serve and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(15)
            except subprocess.TimeoutExpired:
                print(f"console-e2e: tenantry serve did not stop within 15 s of SIGTERM; killed: {self.serve_tail()}", flush=True)
                os.killpg(self.serve.pid, signal.SIGKILL)
                self.serve.wait(5)
            step(f"serve stopped (exit {self.serve.returncode})")
        self.serve = None
        if self.server_started:
            self.server_started = False
            # Its data is thrown away: an immediate shutdown (SIGQUIT to the postmaster) skips the
            # shutdown checkpoint `tenantry dev stop` waits for (10-20 s on a busy machine).
            if self.quit_postgres():
                step("PostgreSQL stopped")
            else:
                try:
                    self.run("dev", "stop", check=False, timeout=60)
                except Exception as error:  # noqa: BLE001 - cleanup goes on
                    print(f"console-e2e: could not stop the private PostgreSQL: {error}", flush=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        step("removed the work directory")


    def quit_postgres(self):
        """Immediate shutdown of the private PostgreSQL; whether it ended within 10 s."""
        try:
            with open(os.path.join(self.workdir, ".tenantry", "postgres", "data", "postmaster.pid")) as file:
                pid = int(file.readline().strip())
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError):
            return False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False


class WriteLoad:
    """One psql session fed INSERTs at a fixed rate from a thread."""

    def __init__(self, url, shop, per_second):
        self.shop, self.interval = shop, 1.0 / per_second
        self.process = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stopping = threading.Event()
        self.written = 0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.run_id = secrets.token_hex(3)

    def start(self):
        self.thread.start()

    def loop(self):
        while not self.stopping.is_set():
            n = self.written + 1
            try:
                self.process.stdin.write(
                    "INSERT INTO customers (shop_id, first_name, last_name, email) "
                    f"VALUES ({int(self.shop)}, 'Console', 'E2E {n}', 'e2e-{self.run_id}-{n}@example.com');\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                return
            self.written = n
            self.stopping.wait(self.interval)

    def failed(self):
        """psql's error, when it stopped on one."""
        if self.process.poll() is not None and self.process.returncode != 0:
            return (self.process.stderr.read() or "").strip()[:300] or f"psql exited {self.process.returncode}"
        return None

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        try:
            self.process.stdin.close()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(5)
