// A real browser (Debian's headless Chromium, driven by playwright-core)
// through sessiongate in front of the vulnerable PHP app: log in through the
// form, run a reflected-XSS script that reads document.cookie, inspect the
// browser's cookie store, log out.
//
// Run by e2e/run.sh after the pytest suite, which exports:
//   E2E_PHP_GATEWAY      https://localhost:PORT (the gateway in front of PHP)
//   E2E_PHP_SESSION_DIR  PHP's session files: the oracle of issued backend IDs
//   E2E_LEAF_CERT        the gateway's leaf certificate (PEM)
//   E2E_LEAF_SPKI        base64 SHA-256 of that leaf's SPKI (openssl), optional
//   E2E_PHP_SCRIPT_READABLE  cookies the gateway leaves readable to scripts
//   E2E_CHROMIUM         browser binary (default /usr/bin/chromium)
//   E2E_BROWSER_SCREENSHOT  where the logged-in page goes (default /tmp/browser-login.png)
//
// Certificate errors are never ignored: the browser trusts exactly the test
// leaf's public key (--ignore-certificate-errors-spki-list), nothing else.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = need('E2E_PHP_GATEWAY');
const SESSION_DIR = need('E2E_PHP_SESSION_DIR');
const LEAF_CERT = need('E2E_LEAF_CERT');
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.E2E_BROWSER_SCREENSHOT || '/tmp/browser-login.png';
const SCRIPT_READABLE = (process.env.E2E_PHP_SCRIPT_READABLE || '').split(',').filter(Boolean);
const GATEWAY_COOKIE = '__Host-sg';
const BACKEND_COOKIES = ['PHPSESSID'];
const USER = 'alice';
const PASSWORD = 'wonderland';
// Anything that looks like a session ID: PHP's default is 32 hex digits.
const ID_LIKE = /[a-z0-9]{26,}/i;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run e2e/run.sh)`);
  return v;
}

// The pin, from the certificate itself; it must agree with openssl's when given.
function leafSpki() {
  const der = new X509Certificate(fs.readFileSync(LEAF_CERT)).publicKey.export({ type: 'spki', format: 'der' });
  const mine = createHash('sha256').update(der).digest('base64');
  const given = process.env.E2E_LEAF_SPKI;
  if (given) assert.equal(given, mine, 'E2E_LEAF_SPKI disagrees with the SPKI of E2E_LEAF_CERT');
  return mine;
}

// Oracle: every session ID PHP has issued so far (its session files).
function issuedIds() {
  return fs.readdirSync(SESSION_DIR).filter((f) => f.startsWith('sess_')).map((f) => f.slice('sess_'.length));
}

function sessionsOf(user) {
  return issuedIds().filter((id) => {
    const body = fs.readFileSync(path.join(SESSION_DIR, `sess_${id}`), 'utf8');
    return body.includes(`user|s:${user.length}:"${user}"`);
  });
}

// Where any backend session ID (by name or by value) appears in a text.
function leaksIn(what, text) {
  const out = [];
  for (const name of BACKEND_COOKIES) if (text.includes(name)) out.push(`${what} contains ${name}`);
  for (const id of issuedIds()) if (text.includes(id)) out.push(`${what} contains the issued backend ID ${id}`);
  return out;
}

const url = (p) => new URL(p, BASE).href;

describe('a real browser through sessiongate (PHP app)', { timeout: 120_000 }, () => {
  let browser;
  let context;
  let page;
  // Everything the browser sent and received, checked at the end.
  const sentCookieHeaders = [];
  const requestUrls = [];
  const setCookieLines = [];
  let firstHtml;
  let anonymousToken;
  let loggedInToken;

  before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${leafSpki()}`,
      ],
    });
    context = await browser.newContext();
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('request', async (req) => {
      requestUrls.push(req.url());
      const cookie = await req.headerValue('cookie').catch(() => null);
      if (cookie) sentCookieHeaders.push(`${req.method()} ${req.url()}: ${cookie}`);
    });
    page.on('response', async (res) => {
      const headers = await res.headersArray().catch(() => []);
      for (const h of headers) {
        if (h.name.toLowerCase() === 'set-cookie') setCookieLines.push(`${res.url()}: ${h.value}`);
      }
    });
  });

  after(async () => {
    await browser?.close();
  });

  async function cookieStore() {
    return context.cookies(BASE);
  }

  it('the first page, as received, carries no session ID (trans-sid links stripped)', async () => {
    const res = await page.goto(url('/index.php'));
    assert.equal(res.status(), 200);
    assert.ok(res.url().startsWith('https://'), res.url());
    firstHtml = await res.text();
    assert.match(firstHtml, /Hello, anonymous/);
    // PHP did start a session for this page (so trans-sid would have written
    // the ID into its links); the browser must not see any of it.
    assert.ok(issuedIds().length > 0, 'oracle: PHP issued no session ID');
    assert.deepEqual(leaksIn('the first page as received', firstHtml), []);
    assert.deepEqual(leaksIn('the first page as rendered', await page.content()), []);
    for (const href of await page.$$eval('a', (as) => as.map((a) => a.href))) {
      assert.doesNotMatch(href, /PHPSESSID/i, href);
    }
    const sg = (await cookieStore()).find((c) => c.name === GATEWAY_COOKIE);
    assert.ok(sg, `no ${GATEWAY_COOKIE} after the first page`);
    anonymousToken = sg.value;
  });

  it('logs in through the form and is greeted by name', async () => {
    await page.fill('form[action="/login.php"] input[name="user"]', USER);
    await page.fill('form[action="/login.php"] input[name="password"]', PASSWORD);
    // POST /login.php, then its redirect: one new document, one load event.
    await Promise.all([
      page.waitForEvent('load'),
      page.click('form[action="/login.php"] input[type="submit"]'),
    ]);
    assert.equal(new URL(page.url()).pathname, '/index.php', page.url());
    assert.equal(await page.textContent('h1'), `Hello, ${USER}`);
    assert.doesNotMatch(page.url(), /PHPSESSID/i);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(sessionsOf(USER).length > 0, `oracle: no PHP session holds user ${USER}`);
    const sg = (await cookieStore()).find((c) => c.name === GATEWAY_COOKIE);
    assert.ok(sg, `no ${GATEWAY_COOKIE} after login`);
    assert.notEqual(sg.value, anonymousToken, `${GATEWAY_COOKIE} was not re-keyed at login`);
    loggedInToken = sg.value;
  });

  it('a reflected-XSS script reads no session identifier from document.cookie', async () => {
    const payload = '<script>window.__stolen = document.cookie; ' +
      'document.title = "stolen:" + document.cookie;</script>';
    const res = await page.goto(url(`/xss.php?q=${encodeURIComponent(payload)}`));
    assert.equal(res.status(), 200);
    const stolen = await page.evaluate(() => window.__stolen);
    assert.equal(typeof stolen, 'string', 'the injected script did not run, so this proves nothing');
    const cookie = await page.evaluate(() => document.cookie);
    assert.equal(stolen, cookie);
    assert.equal(await page.evaluate(() => fetch('/whoami.php').then((r) => r.text())), `${USER}\n`,
      'the page is not in the logged-in session');
    for (const name of [...BACKEND_COOKIES, GATEWAY_COOKIE]) {
      assert.ok(!cookie.includes(name), `document.cookie holds ${name}: ${cookie}`);
    }
    assert.ok(!cookie.includes(loggedInToken), `document.cookie holds the gateway token: ${cookie}`);
    assert.deepEqual(leaksIn('document.cookie', cookie), []);
    assert.doesNotMatch(cookie, ID_LIKE, `document.cookie holds something ID-like: ${cookie}`);
    // Not vacuous: the cookies the config leaves to scripts are there.
    for (const name of SCRIPT_READABLE) {
      assert.match(cookie, new RegExp(`(^|; )${name}=`), `script-readable cookie ${name} missing: ${cookie}`);
    }
  });

  it("the browser's cookie store holds the hardened gateway cookie and no backend one", async () => {
    const jar = await cookieStore();
    const sg = jar.find((c) => c.name === GATEWAY_COOKIE);
    assert.ok(sg, `no ${GATEWAY_COOKIE} in ${JSON.stringify(jar)}`);
    assert.equal(sg.secure, true);
    assert.equal(sg.httpOnly, true);
    assert.equal(sg.sameSite, 'Lax');
    assert.equal(sg.path, '/');
    assert.equal(sg.domain, 'localhost', 'host-only cookie expected');
    assert.equal(sg.value, loggedInToken);
    for (const name of BACKEND_COOKIES) {
      assert.ok(!jar.some((c) => c.name.toLowerCase() === name.toLowerCase()), `${name} in the cookie store`);
    }
    const ids = new Set(issuedIds());
    for (const c of jar) {
      assert.ok(!ids.has(c.value), `cookie ${c.name} holds an issued backend ID`);
      assert.equal(c.secure, true, `cookie ${c.name} is not Secure`);
      if (!SCRIPT_READABLE.includes(c.name)) assert.equal(c.httpOnly, true, `cookie ${c.name} is not HttpOnly`);
    }
  });

  it('logs out: the gateway token is gone and the page is anonymous', async () => {
    await page.goto(url('/index.php'));
    assert.equal(await page.textContent('h1'), `Hello, ${USER}`);
    await Promise.all([page.waitForEvent('load'), page.click('a[href="/logout.php"]')]);
    assert.equal(new URL(page.url()).pathname, '/index.php', page.url());
    assert.equal(await page.textContent('h1'), 'Hello, anonymous');
    const sg = (await cookieStore()).find((c) => c.name === GATEWAY_COOKIE);
    assert.ok(!sg || sg.value !== loggedInToken, `${GATEWAY_COOKIE} survived the logout`);
    assert.equal(await page.evaluate(() => fetch('/whoami.php').then((r) => r.text())), 'anonymous\n');
  });

  it('the logged-out token replayed in another browser context is anonymous', async () => {
    const other = await browser.newContext();
    try {
      await other.addCookies([{
        name: GATEWAY_COOKIE, value: loggedInToken, url: BASE, secure: true, httpOnly: true, sameSite: 'Lax',
      }]);
      const p = await other.newPage();
      const res = await p.goto(url('/whoami.php'));
      assert.notEqual((await res.text()).trim(), USER, 'the logged-out token still opens the session');
    } finally {
      await other.close();
    }
  });

  it('nothing the browser sent or received carried a backend session ID', () => {
    assert.ok(requestUrls.length > 0 && setCookieLines.length > 0, 'recorded no traffic');
    assert.deepEqual(requestUrls.flatMap((u) => leaksIn(`request URL ${u}`, u)), []);
    assert.deepEqual(sentCookieHeaders.flatMap((c) => leaksIn(`Cookie header ${c}`, c)), []);
    assert.deepEqual(setCookieLines.flatMap((l) => leaksIn(`Set-Cookie ${l}`, l)), []);
  });
});
