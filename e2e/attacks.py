"""Session attacks, straight at two vulnerable apps and through sessiongate.

Run by e2e/run.sh, which starts the apps and one gateway per app and exports
their addresses. Every attack function is written as an attacker would: it
sees only what a browser or the attacker's own client receives, and it tries
every channel the app accepts a session ID on (cookie, URL, form field).

Each attack runs twice: straight at the app, where it must SUCCEED (else the
test proves nothing), and through the gateway, where it must FAIL.

The only knowledge beyond the attacker's view is a test oracle: the list of
session IDs the apps issued (PHP's session files, a file the Flask app
appends to). It is used only to assert that none of them ever reaches a
client of the gateway.
"""

from __future__ import annotations

import html.parser
import os
import re
import contextlib
import secrets
import time
import urllib.parse
from dataclasses import dataclass

import pytest
import requests

CA = os.environ["E2E_CA"]
# requests lets these override a Session's own `verify` (psf/requests#3829):
# drop them so that verify=CA is what is used.
for _var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_var, None)
VICTIM = ("alice", "wonderland")
ATTACKER_ACCOUNT = ("bob", "builder")
USERS = {"alice", "bob"}


# --------------------------------------------------------------------------
# The apps and the two ways of reaching them


@dataclass(frozen=True)
class App:
    name: str
    direct: str
    gateway: str
    session_cookie: str
    index: str
    login: str
    logout: str
    whoami: str
    upload: str
    script_readable: frozenset

    def issued_ids(self) -> list[str]:
        """Oracle: every session ID the app has issued so far, oldest first
        (PHP: its session files; Flask: the values its cookie carried)."""
        if self.name == "php":
            d = os.environ["E2E_PHP_SESSION_DIR"]
            files = sorted(os.scandir(d), key=lambda e: e.stat().st_mtime_ns)
            return [e.name[len("sess_"):] for e in files if e.name.startswith("sess_")]
        try:
            with open(os.environ["E2E_FLASK_ORACLE"]) as f:
                return [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def issued_since(self, before: list[str]) -> set[str]:
        if self.name == "php":
            return set(self.issued_ids()) - set(before)
        # Flask may issue a value again (same content, same second).
        return set(self.issued_ids()[len(before):])


def _readable(var: str) -> frozenset:
    return frozenset(n for n in os.environ.get(var, "").split(",") if n)


PHP = App("php", os.environ["E2E_PHP_DIRECT"], os.environ["E2E_PHP_GATEWAY"], "PHPSESSID",
          "/index.php", "/login.php", "/logout.php", "/whoami.php", "/upload.php",
          _readable("E2E_PHP_SCRIPT_READABLE"))
FLASK = App("flask", os.environ["E2E_FLASK_DIRECT"], os.environ["E2E_FLASK_GATEWAY"], "session",
            "/", "/login", "/logout", "/whoami", "/upload",
            _readable("E2E_FLASK_SCRIPT_READABLE"))
APPS = {"php": PHP, "flask": FLASK}


@dataclass(frozen=True)
class Target:
    app: App
    via_gateway: bool

    @property
    def base(self) -> str:
        return self.app.gateway if self.via_gateway else self.app.direct

    def url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base, path)

    def __str__(self) -> str:
        return f"{self.app.name}-{'gateway' if self.via_gateway else 'direct'}"


def targets(*names: str):
    return [Target(APPS[n], g) for n in names for g in (False, True)]


# Every response any client received through a gateway, for the Set-Cookie
# audit at the end.
RECEIVED: list[tuple[str, requests.Response]] = []


def set_cookie_lines(r: requests.Response) -> list[str]:
    return list(r.raw.headers.getlist("Set-Cookie")) if r.raw is not None else []


def new_session(t: Target) -> requests.Session:
    s = requests.Session()
    s.verify = CA
    if t.via_gateway:
        s.hooks["response"].append(lambda r, *a, **k: RECEIVED.append((t.app.name, r)))
    return s




# --------------------------------------------------------------------------
# A browser: cookie jar, redirects, forms, and a record of all it received


class _Forms(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": (a.get("method") or "get").lower(),
                               "enctype": a.get("enctype", ""), "inputs": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"].append((a["name"], a.get("value") or "", a.get("type", "text")))


def forms_of(page: str) -> list[dict]:
    p = _Forms()
    p.feed(page)
    return p.forms


class Browser:
    def __init__(self, t: Target):
        self.t = t
        self.s = new_session(t)
        self.received: list[requests.Response] = []
        self.s.hooks["response"].append(lambda r, *a, **k: self.received.append(r))

    def get(self, path: str, **kw) -> requests.Response:
        return self.s.get(self.t.url(path), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.s.post(self.t.url(path), **kw)

    def submit(self, page: requests.Response, action_contains: str, fields: dict,
               files: dict | None = None, headers: dict | None = None) -> requests.Response:
        """Submits the first form of `page` whose action contains the string,
        as a browser does: its hidden fields too, to its action URL."""
        for form in forms_of(page.text):
            if action_contains in form["action"]:
                data = {n: v for n, v, typ in form["inputs"] if typ not in ("submit", "file")}
                data.update(fields)
                url = urllib.parse.urljoin(page.url, form["action"])
                if form["method"] == "post":
                    return self.s.post(url, data=data, files=files, headers=headers)
                return self.s.get(url, params=data, headers=headers)
        raise AssertionError(f"no form with action ~{action_contains!r} on {page.url}: {page.text[:300]}")

    def login(self, user: str, password: str) -> requests.Response:
        page = self.get(self.t.app.index)
        return self.submit(page, self.t.app.login, {"user": user, "password": password})

    def whoami(self) -> str:
        return self.get(self.t.app.whoami).text.strip()

    def host_domain(self) -> str:
        # The domain http.cookiejar files a host-only cookie under.
        host = urllib.parse.urlsplit(self.t.base).hostname
        return host if "." in host else host + ".local"

    def plant(self, name: str, value: str, path: str = "/"):
        """A cookie the attacker got into this browser (a sibling subdomain, a
        reflected XSS writing document.cookie, a shared machine)."""
        self.s.cookies.set(name, value, domain=self.host_domain(), path=path)


# --------------------------------------------------------------------------
# What the attacker can do with what he holds


@dataclass
class Outcome:
    succeeded: bool
    detail: str


def shown_user(r: requests.Response) -> str | None:
    text = r.text.strip()
    return text if text in USERS else None


def attacker_try(t: Target, cookie_header: str | None = None, ids=()) -> dict[str, str]:
    """Tries a stolen Cookie header as is, and each known session ID by every
    channel the app accepts one on: a cookie, a URL parameter, a form field.
    Returns {channel: user the app showed} for every channel that gave a user."""
    name = t.app.session_cookie
    got = {}

    def attempt(channel, method, path, **kw):
        s = new_session(t)
        r = s.request(method, t.url(path), **kw)
        if (u := shown_user(r)) is not None:
            got[channel] = u

    if cookie_header:
        attempt("stolen Cookie header", "GET", t.app.whoami, headers={"Cookie": cookie_header})
    for sid in ids:
        attempt(f"Cookie {name}={sid}", "GET", t.app.whoami, headers={"Cookie": f"{name}={sid}"})
        attempt(f"GET ?{name}={sid}", "GET", f"{t.app.whoami}?{urllib.parse.urlencode({name: sid})}")
        attempt(f"POST body {name}={sid}", "POST", t.app.whoami, data={name: sid})
    return got


def outcome(got: dict[str, str], what: str) -> Outcome:
    hits = {c: u for c, u in got.items() if u == VICTIM[0]}
    return Outcome(bool(hits), f"{what}; attacker saw the victim's account via {hits or 'no channel'}")


def expect(t: Target, o: Outcome):
    if t.via_gateway:
        assert not o.succeeded, f"ATTACK SUCCEEDED THROUGH THE GATEWAY ({t}): {o.detail}"
    else:
        assert o.succeeded, f"attack failed against the bare app, so it proves nothing ({t}): {o.detail}"


def ids_in_url(url: str, name: str) -> set[str]:
    parts = urllib.parse.urlsplit(url)
    found = {v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == name.lower()}
    found |= set(re.findall(rf";{re.escape(name)}=([^;/?#]+)", parts.path, re.I))
    return found


def ids_in_html(body: str, name: str) -> set[str]:
    found = set(re.findall(rf"[?&;]{re.escape(name)}=([A-Za-z0-9,-]+)", body))
    for form in forms_of(body):
        found |= {v for n, v, _ in form["inputs"] if n == name and v}
    return found


def leaks(responses, secrets_: set[str], bodies: bool) -> list[str]:
    """Where any of the secrets appears in what the client received."""
    out = []
    for r in responses:
        for k, v in r.headers.items():
            out += [f"{r.status_code} {r.url}: header {k}: {v}" for s in secrets_ if s in v]
        if bodies:
            text = r.content.decode("latin-1")
            out += [f"{r.status_code} {r.url}: body contains {s}" for s in secrets_ if s in text]
    return out


# --------------------------------------------------------------------------
# The attacks


def fixation_by_url(t: Target) -> Outcome:
    """The attacker sends the victim a link carrying a session ID he chose;
    the victim logs in on the page it opens; the attacker uses the ID."""
    known = "fix" + secrets.token_hex(10)
    victim = Browser(t)
    page = victim.get(f"{t.app.index}?{t.app.session_cookie}={known}")
    landed = victim.submit(page, t.app.login, {"user": VICTIM[0], "password": VICTIM[1]})
    assert f"Hello, {VICTIM[0]}" in landed.text, f"victim's login did not work ({t})"
    return outcome(attacker_try(t, ids=[known]), f"link ?{t.app.session_cookie}={known}")


def fixation_by_cookie(t: Target, duplicate: bool) -> Outcome:
    """The attacker gets a session of his own, plants its cookies (and a
    session cookie with his ID) in the victim's browser, the victim logs in,
    the attacker comes back with his cookies and his ID.

    duplicate: the victim already has cookies of their own; the planted ones
    have a more specific path, so the browser sends them first, next to the
    victim's under the same names."""
    attacker = Browser(t)
    attacker.get(t.app.index)
    mine = {c.name: c.value for c in attacker.s.cookies}
    known = mine.get(t.app.session_cookie) or "fix" + secrets.token_hex(10)
    planted = dict(mine, **{t.app.session_cookie: known})

    victim = Browser(t)
    if duplicate:
        victim.get(t.app.index)
        own = {c.name for c in victim.s.cookies}
        assert own & set(planted), f"victim has no cookie the plant can duplicate ({t})"
    for n, v in planted.items():
        victim.plant(n, v, path=t.app.login if duplicate else "/")
    landed = victim.login(*VICTIM)
    if not duplicate:
        assert f"Hello, {VICTIM[0]}" in landed.text, f"victim's login did not work ({t})"
    got = attacker_try(t, cookie_header="; ".join(f"{n}={v}" for n, v in mine.items()), ids=[known])
    return outcome(got, f"planted {sorted(planted)} at path {t.app.login if duplicate else '/'}")


def fixation_by_cross_site_post(t: Target) -> Outcome:
    """An attacker's page auto-submits a login form to the app, carrying the
    attacker's session ID as a form field next to the victim's credentials
    (a browser sends no SameSite=Lax cookie with it); the attacker uses the ID."""
    known = "fix" + secrets.token_hex(10)
    victim = Browser(t)
    victim.post(t.app.login, data={t.app.session_cookie: known, "user": VICTIM[0], "password": VICTIM[1]},
                headers={"Origin": "https://evil.example", "Referer": "https://evil.example/",
                         "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    return outcome(attacker_try(t, ids=[known]), f"cross-site POST {t.app.login} with {t.app.session_cookie}={known}")


def visible_to_attacker(t: Target, victim: Browser) -> dict[str, str]:
    """The victim's cookies an attacker can read: all of them when they cross
    the network in clear (http), else those a page script can read
    (document.cookie from a reflected XSS: no HttpOnly)."""
    if urllib.parse.urlsplit(t.base).scheme == "http":
        return {c.name: c.value for c in victim.s.cookies}
    readable = set()
    for r in victim.received:
        for line in set_cookie_lines(r):
            name = line.split("=", 1)[0].strip()
            attrs = [a.strip().lower() for a in line.split(";")[1:]]
            if "httponly" not in attrs:
                readable.add(name)
    return {c.name: c.value for c in victim.s.cookies if c.name in readable}


def replay_stolen_cookie(t: Target) -> tuple[Outcome, Browser]:
    victim = Browser(t)
    victim.login(*VICTIM)
    assert victim.whoami() == VICTIM[0], f"victim's login did not work ({t})"
    stolen = visible_to_attacker(t, victim)
    ids = [v for n, v in stolen.items() if n == t.app.session_cookie]
    got = attacker_try(t, cookie_header="; ".join(f"{n}={v}" for n, v in stolen.items()) or None, ids=ids)
    return outcome(got, f"stole {sorted(stolen)}"), victim


def replay_after_logout(t: Target) -> Outcome:
    """The attacker copied all of the victim's cookies (a shared machine) and
    replays them after the victim logged out."""
    victim = Browser(t)
    victim.login(*VICTIM)
    copied = "; ".join(f"{c.name}={c.value}" for c in victim.s.cookies)
    before = attacker_try(t, cookie_header=copied)
    assert before.get("stolen Cookie header") == VICTIM[0], \
        f"a copy of a logged-in browser's cookies should work before logout ({t}): {before}"
    victim.get(t.app.logout)
    assert victim.whoami() == "anonymous", f"victim's logout did not work ({t})"
    return outcome(attacker_try(t, cookie_header=copied), "full cookie copy replayed after logout")


COMMON_SECRETS = ["secret", "dev", "development", "changeme", "change-me", "secret-key",
                  "your-secret-key", "password", "flask", "default"]


def forged_flask_cookie(t: Target) -> Outcome:
    """The attacker logs in with his own account, cracks the signing key of
    the session cookie he gets against a list of usual weak keys (as
    flask-unsign does) and signs {"user": "alice"}. With no cookie to crack,
    he signs with every key on the list."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    def serializer(key):
        a = Flask("attacker")
        a.secret_key = key
        return SecureCookieSessionInterface().get_signing_serializer(a)

    attacker = Browser(t)
    attacker.login(*ATTACKER_ACCOUNT)
    mine = attacker.s.cookies.get(t.app.session_cookie)
    keys = COMMON_SECRETS
    if mine:
        keys = [k for k in COMMON_SECRETS if _loads(serializer(k), mine)] or COMMON_SECRETS
    got = {}
    for k in keys:
        forged = serializer(k).dumps({"user": VICTIM[0]})
        got.update({f"{ch} (key {k!r})": u for ch, u in attacker_try(t, ids=[forged]).items()})
    return outcome(got, f"forged with keys {keys}")


def _loads(ser, value):
    try:
        ser.loads(value)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("t", targets("php"), ids=str)
def test_fixation_by_url_parameter(t):
    expect(t, fixation_by_url(t))


@pytest.mark.parametrize("duplicate", [False, True], ids=["fresh-victim", "duplicate-name"])
@pytest.mark.parametrize("t", targets("php"), ids=str)
def test_fixation_by_planted_cookie(t, duplicate):
    expect(t, fixation_by_cookie(t, duplicate))


@pytest.mark.parametrize("t", targets("php"), ids=str)
def test_fixation_by_cross_site_form_post(t):
    expect(t, fixation_by_cross_site_post(t))


@pytest.mark.parametrize("t", targets("php", "flask"), ids=str)
def test_replay_of_stolen_session_cookie(t):
    before = t.app.issued_ids()
    o, victim = replay_stolen_cookie(t)
    expect(t, o)
    if t.via_gateway:
        names = {line.split("=", 1)[0].strip() for r in victim.received for line in set_cookie_lines(r)}
        assert t.app.session_cookie not in names, f"the app's session cookie reached the browser: {names}"
        assert "__Host-sg" in names, f"no gateway cookie: {names}"
        issued = t.app.issued_since(before)
        assert issued, "oracle: the app issued no session ID during the test"
        # Bodies of the PHP app carry trans-sid links: see test_session_id_in_html_links.
        found = leaks(victim.received, issued, bodies=t.app is not PHP)
        assert not found, f"backend session ID reached the client: {found}"


@pytest.mark.parametrize("t", targets("php", "flask"), ids=str)
def test_replay_after_logout(t):
    expect(t, replay_after_logout(t))


@pytest.mark.parametrize("t", targets("flask"), ids=str)
def test_forged_session_cookie_with_weak_key(t):
    expect(t, forged_flask_cookie(t))


@pytest.mark.parametrize("t", targets("php"), ids=str)
def test_session_id_in_location_header(t):
    """A cookieless first request (the login form posted straight away): the
    app's redirect carries the ID (Location: /index.php?PHPSESSID=...), which
    then sits in history, logs and Referer."""
    before = t.app.issued_ids()
    victim = Browser(t)
    victim.post(t.app.login, data={"user": VICTIM[0], "password": VICTIM[1]})
    locations = [r.headers["Location"] for r in victim.received if "Location" in r.headers]
    seen = set().union(*(ids_in_url(loc, t.app.session_cookie) for loc in locations))
    o = outcome(attacker_try(t, ids=sorted(seen)), f"IDs read from Location headers {locations}")
    expect(t, o)
    if t.via_gateway:
        issued = t.app.issued_since(before)
        assert issued, "oracle: the app issued no session ID during the test"
        found = [loc for loc in locations for s in issued if s in loc]
        assert not found, f"backend session ID in a Location header: {found}"


@pytest.mark.parametrize("t", [
    Target(PHP, False),
    Target(PHP, True),
], ids=str)
def test_session_id_in_html_links(t):
    """PHP's trans-sid writes the session ID into links and forms of a page
    served to a client without a session cookie; anything that reads the page
    (a script injected through xss.php, a Referer) learns it."""
    before = t.app.issued_ids()
    victim = Browser(t)
    page = victim.get(t.app.index)
    seen = ids_in_html(page.text, t.app.session_cookie)
    victim.submit(page, t.app.login, {"user": VICTIM[0], "password": VICTIM[1]})
    o = outcome(attacker_try(t, ids=sorted(seen)), f"IDs read from the page's links {sorted(seen)}")
    if not t.via_gateway:
        expect(t, o)
        return
    issued = t.app.issued_since(before)
    assert issued, "oracle: the app issued no session ID during the test"
    found = leaks(victim.received, issued, bodies=True)
    assert not found, f"backend session ID in a response body ({o.detail}): {found}"


def normal_flow(t: Target) -> Browser:
    """What a user does: log in, navigate, submit a form, follow a redirect,
    upload a file, log out."""
    b = Browser(t)
    r = b.login(*VICTIM)
    assert r.status_code == 200 and r.history and r.history[-1].status_code in (302, 303), r.history
    assert f"Hello, {VICTIM[0]}" in r.text
    for href in re.findall(r'href="([^"]+)"', r.text):
        if "logout" not in href:
            assert b.s.get(urllib.parse.urljoin(r.url, href)).status_code == 200, href
    assert b.whoami() == VICTIM[0]
    if t.app is PHP:
        res = b.submit(b.get(t.app.index), "xss.php", {"q": "e2e-search"})
        assert "You searched for: e2e-search" in res.text
    payload = secrets.token_bytes(300 * 1024)
    up = b.submit(b.get(t.app.upload), t.app.upload, {}, files={"file": ("blob.bin", payload)})
    assert up.status_code == 200 and f"received {len(payload)} bytes from {VICTIM[0]}" in up.text, up.text
    assert b.whoami() == VICTIM[0]
    token = b.s.cookies.get("__Host-sg")
    out = b.get(t.app.logout)
    assert out.status_code == 200 and "Hello, anonymous" in out.text
    assert b.whoami() == "anonymous"
    if t.via_gateway:
        assert token, "no gateway cookie while logged in"
        # (The PHP app's next page may start a new anonymous session.)
        assert b.s.cookies.get("__Host-sg") != token, "the gateway cookie survived the logout"
    return b


@pytest.mark.parametrize("t", targets("php", "flask"), ids=str)
def test_normal_flows_keep_working(t):
    normal_flow(t)


@pytest.mark.parametrize("t", targets("flask"), ids=str)
def test_same_account_on_two_browsers_in_one_second(t):
    """A user logs in on a laptop and a phone at the same moment (or two
    people share an account). Flask signs {"user": "alice"} with a 1-second
    timestamp, so both sessions get byte-identical cookies: straight at the
    app both stay logged in."""
    for _ in range(5):
        time.sleep(1.02 - time.time() % 1)  # start of a fresh second
        start = int(time.time())
        a, b = Browser(t), Browser(t)
        pa, pb = a.get(t.app.index), b.get(t.app.index)
        a.submit(pa, t.app.login, {"user": VICTIM[0], "password": VICTIM[1]})
        b.submit(pb, t.app.login, {"user": VICTIM[0], "password": VICTIM[1]})
        if int(time.time()) == start:
            break
    else:
        pytest.fail("could not fit two logins into one second")
    assert (a.whoami(), b.whoami()) == (VICTIM[0], VICTIM[0])


@pytest.mark.parametrize("app", ["php", "flask"])
def test_plain_requests_client_stays_logged_in(app):
    """An ordinary requests.Session that just follows Set-Cookie."""
    base = APPS[app].gateway
    a = APPS[app]
    s = requests.Session()
    s.verify = CA
    assert "Hello, anonymous" in s.get(base + a.index).text
    r = s.post(base + a.login, data={"user": VICTIM[0], "password": VICTIM[1]})
    assert r.status_code == 200 and f"Hello, {VICTIM[0]}" in r.text
    for _ in range(3):
        assert s.get(base + a.whoami).text.strip() == VICTIM[0]
        assert f"Hello, {VICTIM[0]}" in s.get(base + a.index).text


def cookie_flag_problems(lines: list[str], script_readable: frozenset) -> list[str]:
    problems = []
    for line in lines:
        name = line.split("=", 1)[0].strip()
        attrs = {a.split("=", 1)[0].strip().lower() for a in line.split(";")[1:]}
        missing = [f for f in ("secure", "samesite") if f not in attrs]
        if name in script_readable:
            if "httponly" in attrs:
                problems.append(f"{line!r}: configured script-readable, but HttpOnly")
        elif "httponly" not in attrs:
            missing.append("httponly")
        if missing:
            problems.append(f"{line!r}: no {', '.join(missing)}")
    return problems


@pytest.mark.parametrize("t", targets("php"), ids=str)
def test_a_junk_cookie_line_does_not_break_the_page(t):
    # PHP's header() lets a control byte through; a browser refuses that
    # cookie and shows the page. The gateway used to answer 502.
    r = new_session(t).get(t.url("/junk.php"))
    lines = set_cookie_lines(r)
    assert r.status_code == 200 and "junk header" in r.text, (r.status_code, r.text[:200])
    junk = [line for line in lines if line.startswith("tracking=")]
    if t.via_gateway:
        assert not junk, f"the cookie a browser refuses was passed on: {lines}"
        assert any(line.startswith("lang=en;") and "Secure" in line for line in lines), lines
    else:
        assert junk == ["tracking=a\x01b"], f"oracle: the app sent no junk line: {lines}"


# Last in the file: it also audits what every test above received.
@pytest.mark.parametrize("t", targets("php", "flask"), ids=str)
def test_set_cookie_flags(t):
    b = normal_flow(t)
    lines = [line for r in b.received for line in set_cookie_lines(r)]
    if t.via_gateway:
        lines += [line for name, r in RECEIVED if name == t.app.name for line in set_cookie_lines(r)]
    assert lines, "no Set-Cookie seen at all"
    o = Outcome(bool(problems := cookie_flag_problems(lines, t.app.script_readable)),
                f"{len(lines)} Set-Cookie lines; weak: {problems[:10]}")
    expect(t, o)
