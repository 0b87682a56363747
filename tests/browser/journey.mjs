#!/usr/bin/env node
// A person's journey through Postern's web interface, in real headless Chromium, with an axe-core
// accessibility check on every page. Run as `node tests/browser/journey.mjs` (after
// `npm ci --prefix tests/browser`); see README.md beside this file for the environment it reads.
//
// Output: `STEP`, `PAGE`, `NOTE`, `SKIPPED` and `VIOLATION` lines as it goes, then one line
// `RESULT {json}`. Exit status 0 only if every step passed and axe found no violation; on a failed
// step it prints `FAILED: <step>: <message>` with the page's URL and h1, and a screenshot.

import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Configuration

const env = process.env;
const BASE = (env.POSTERN_WEB_URL || '').replace(/\/+$/, '');
const CODE_FILE = env.POSTERN_CODE_FILE || '';
const SHOTS_DIR = env.POSTERN_SHOTS_DIR || '';
const JS = (env.POSTERN_JS || 'on').toLowerCase();
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const EMAIL = 'sam@riverside-youth.example';
const MASH_EMAIL = 'alex@northshire-mash.example';
// Millbrook Academy requires passkeys (sign_in = "passkey" in the demo's organisations.toml).
const DSL_EMAIL = 'jo@millbrook-academy.example';
// The MASH's DPO and Caldicott Guardian (roles dpo, auditor), and the council's IT officer (admin).
const DPO_EMAIL = 'priya@northshire-mash.example';
const ADMIN_EMAIL = 'morgan@northshire-cc.example';
// `full` (the whole journey) or `tampered`: the DPO verifies a log whose record
// POSTERN_TAMPERED_SEQ the test altered, and must see it reported broken there.
const PART = env.POSTERN_JOURNEY || 'full';
const TAMPERED_SEQ = env.POSTERN_TAMPERED_SEQ || '';

const ACTION_TIMEOUT_MS = 10_000; // one click, fill or wait for an element
const NAV_TIMEOUT_MS = 20_000; // one page load
const CODE_WAIT_MS = 10_000; // for a sign-in code to reach POSTERN_CODE_FILE
const DELIVERY_WAIT_MS = 20_000; // for a share to show "Delivered"
const WATCHDOG_MS = 240_000; // the whole journey

const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

function usage(message) {
  console.log(`FAILED: setup: ${message}`);
  console.log(`RESULT ${JSON.stringify({ pages: 0, violations: [], failed: 'setup' })}`);
  process.exit(1);
}
if (!/^https?:\/\//.test(BASE)) usage('POSTERN_WEB_URL must be set, e.g. https://127.0.0.1:8443');
if (!CODE_FILE) usage('POSTERN_CODE_FILE must be set to the file the sign-in codes are written to');
if (JS !== 'on' && JS !== 'off') usage(`POSTERN_JS must be "on" or "off", not "${env.POSTERN_JS}"`);

let chromium;
let AXE_SOURCE;
try {
  ({ chromium } = await import('playwright-core'));
  AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
} catch (e) {
  usage(`cannot load playwright-core or axe-core (run \`npm ci --prefix tests/browser\`): ${e.message}`);
}
if (!existsSync(CHROMIUM)) usage(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
if (SHOTS_DIR) mkdirSync(SHOTS_DIR, { recursive: true });

// ---------------------------------------------------------------------------------------------
// Bookkeeping

const state = {
  pages: 0, // pages axe ran on
  violations: [], // {page, id, impact, help, helpUrl, targets}
  visited: [], // {name, url, h1, status}
  skipped: [],
  browserProblems: [], // CSP violations and uncaught page errors
  reference: null,
  payloadSha256: null,
  mashSha256: null,
  refused: null,
  passkey: null, // {added, signed_in, code_withheld}, with JavaScript on
  dpo: null, // {filtered, record, subject, exported, report, explained}
  tampered: null, // {broken, seq}
  request: null, // {reference, answered, seen_by_requester}
  failed: null,
};
let currentStep = 'start';
let lastStatus = null; // HTTP status of the last main-frame document
let payloadDir = null; // temporary, removed at the end
let page; // the one tab the journey runs in
let browser;

function log(kind, text) {
  console.log(`${kind} ${text}`);
}

function result() {
  return {
    pages: state.pages,
    violations: state.violations,
    failed: state.failed,
    js: JS,
    reference: state.reference,
    payload_sha256: state.payloadSha256,
    mash_download_sha256: state.mashSha256,
    refused: state.refused,
    passkey: state.passkey,
    dpo: state.dpo,
    tampered: state.tampered,
    request: state.request,
    skipped: state.skipped,
    browser_problems: state.browserProblems,
    visited: state.visited,
  };
}

async function finish(code) {
  clearTimeout(watchdog);
  console.log(`RESULT ${JSON.stringify(result())}`);
  try {
    if (browser) await browser.close();
  } catch {
    // already gone
  }
  if (payloadDir) rmSync(payloadDir, { recursive: true, force: true });
  process.exit(code);
}

const watchdog = setTimeout(() => {
  console.log(`FAILED: ${currentStep}: the journey took longer than ${WATCHDOG_MS / 1000} s`);
  state.failed = currentStep;
  console.log(`RESULT ${JSON.stringify(result())}`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

async function h1Texts() {
  try {
    return (await page.locator('h1').allInnerTexts()).map(t => t.trim().replace(/\s+/g, ' '));
  } catch {
    return [];
  }
}

async function screenshot(name) {
  const dir = SHOTS_DIR;
  if (!dir) return null;
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

// Runs one named step; on failure reports where the page was, keeps a screenshot, and exits 1.
async function step(name, fn) {
  currentStep = name;
  log('STEP', name);
  try {
    return await fn();
  } catch (e) {
    state.failed = name;
    const message = (e && e.message ? e.message : String(e)).split('\n')[0];
    console.log(`FAILED: ${name}: ${message}`);
    if (page) {
      console.log(`  url: ${page.url()}`);
      console.log(`  h1: ${JSON.stringify(await h1Texts())}`);
      try {
        const alert = page.locator('[role=alert], .error-summary').first();
        if (await alert.count()) console.log(`  alert: ${(await alert.innerText()).replace(/\s+/g, ' ').trim()}`);
      } catch {
        // nothing more to say
      }
      try {
        const dir = SHOTS_DIR || tmpdir();
        const path = join(dir, `failed-${name.replace(/[^\w-]+/g, '-')}.png`);
        await page.screenshot({ path, fullPage: true });
        console.log(`  screenshot: ${path}`);
      } catch (shotError) {
        console.log(`  screenshot: could not be taken: ${shotError.message.split('\n')[0]}`);
      }
    }
    await finish(1);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// Text that an accessible name starts with (labels may go on with hint text).
function startsWith(text) {
  return new RegExp(`^\\s*${escapeRegExp(text)}`, 'i');
}

// ---------------------------------------------------------------------------------------------
// Pages

// Checks axe-core on the page as it is now, and records what it found under `name`.
async function axeCheck(name) {
  // page.evaluate goes through the DevTools protocol, which the page's Content-Security-Policy
  // does not govern and which works with JavaScript disabled; so the page keeps its real CSP
  // (no bypassCSP) and axe runs on the very DOM a person gets.
  if (JS === 'off') {
    // With JavaScript disabled, Chromium runs promise reactions but never fires timers (nor
    // queueMicrotask, requestAnimationFrame or MessageChannel), and axe.run defers each rule
    // with setTimeout(fn, 0). So for axe alone: a zero-delay setTimeout becomes a promise
    // reaction; a delayed one (axe's own time-outs) never fires, as with scripts off. The page
    // has no script of its own running to notice.
    await page.evaluate(() => {
      let id = 0;
      window.setTimeout = (fn, ms, ...args) => {
        if (!ms) Promise.resolve().then(() => fn(...args));
        id += 1;
        return id;
      };
      window.clearTimeout = () => {};
    });
  }
  await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(
    tags => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }),
    AXE_TAGS,
  );
  state.pages += 1;
  for (const v of results.violations) {
    const targets = v.nodes.slice(0, 3).map(n => n.target.join(' '));
    state.violations.push({ page: name, id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl, targets });
    log('VIOLATION', `${name}: ${v.id} (${v.impact}): ${v.help}: ${targets.join(' | ')}`);
  }
}

// What a page load must leave: exactly one h1, matching `h1` (a string it contains, or a RegExp).
// Then axe runs on it and a screenshot is kept.
async function arrived(name, h1) {
  await page.waitForLoadState('load', { timeout: NAV_TIMEOUT_MS });
  const heading = page.getByRole('heading', { level: 1, name: h1 });
  try {
    await heading.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT_MS });
  } catch {
    throw new Error(`expected the h1 ${h1}, got ${JSON.stringify(await h1Texts())} at ${page.url()}`);
  }
  const count = await page.locator('h1').count();
  check(count === 1, `page "${name}" has ${count} h1 elements, not 1`);
  const h1Text = (await h1Texts())[0];
  await axeCheck(name);
  await reflowCheck(name);
  await screenshot(name);
  state.visited.push({ name, url: page.url(), h1: h1Text, status: lastStatus });
  log('PAGE', `${name}: ${page.url()} (${lastStatus}) "${h1Text}"`);
}

// WCAG 1.4.10 (reflow): at 400% zoom a 1280 px wide window is 320 CSS px wide, and the page
// must not scroll sideways there. Checked at that width, then the window is put back.
async function reflowCheck(name) {
  const before = page.viewportSize();
  await page.setViewportSize({ width: 320, height: 640 });
  const { scroll, width, wide } = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    // The outermost elements that stick out, to say what to fix.
    const wide = [...document.querySelectorAll('body *')]
      .filter(el => el.getBoundingClientRect().right > width + 1 && !el.closest('.visually-hidden'))
      .filter((el, _, all) => !all.includes(el.parentElement))
      .slice(0, 3)
      .map(el => `${el.tagName.toLowerCase()}${el.className ? '.' + String(el.className).split(' ').join('.') : ''} (${Math.round(el.getBoundingClientRect().right)} px)`);
    return { scroll: document.documentElement.scrollWidth, width, wide };
  });
  await page.setViewportSize(before);
  check(scroll <= width + 1, `page "${name}" scrolls sideways at 320 CSS px (400% zoom): ${scroll} > ${width}; sticking out: ${wide.join(', ')}`);
}

// Does `action` (which starts a full page load: a link, a form submission, a goto) and waits for
// the new document to load.
async function loading(action) {
  const loaded = page.waitForEvent('load', { timeout: NAV_TIMEOUT_MS });
  loaded.catch(() => {}); // if `action` throws, that error is the one to report
  await action();
  await loaded;
}

// Presses Tab from where focus is (right after a page load: the top of the document) until
// `locator` has focus: shows that it is reachable by keyboard, in order.
async function tabTo(locator, what, maxPresses = 40) {
  const target = await locator.elementHandle({ timeout: ACTION_TIMEOUT_MS });
  for (let i = 1; i <= maxPresses; i++) {
    await page.keyboard.press('Tab');
    if (await target.evaluate(el => el === document.activeElement)) return i;
  }
  throw new Error(`${what} was not reached with ${maxPresses} presses of Tab`);
}

function continueButton() {
  return page.getByRole('button', { name: 'Continue', exact: true });
}

// Leaves exactly one box of `role` ('checkbox' or 'radio') checked: the one whose name starts with
// `label`.
async function choose(role, label) {
  const wanted = page.getByRole(role, { name: startsWith(label) });
  const n = await wanted.count();
  check(n === 1, `expected one ${role} labelled "${label}…", found ${n}`);
  if (role === 'checkbox') {
    const all = page.getByRole('checkbox');
    for (let i = 0; i < (await all.count()); i++) {
      const box = all.nth(i);
      if ((await box.isChecked()) && !(await box.evaluate((el, w) => el === w, await wanted.elementHandle()))) {
        await box.uncheck();
      }
    }
  }
  await wanted.check();
  check(await wanted.isChecked(), `${role} "${label}…" did not become checked`);
  return wanted;
}

async function fillTextbox(label, text) {
  const box = page.getByRole('textbox', { name: startsWith(label) });
  const n = await box.count();
  check(n === 1, `expected one text field labelled "${label}…", found ${n}`);
  await box.fill(text);
}

// Reads the newest sign-in code for `email` from POSTERN_CODE_FILE, as the nth one seen (so a code
// from before the request is not taken).
function codesFor(email) {
  let text = '';
  try {
    text = readFileSync(CODE_FILE, 'utf8');
  } catch {
    return [];
  }
  const codes = [];
  for (const line of text.split('\n')) {
    const m = line.match(/code for (\S+): (\d{6})/);
    if (m && m[1] === email) codes.push(m[2]);
  }
  return codes;
}

async function newCode(email, seenBefore) {
  const deadline = Date.now() + CODE_WAIT_MS;
  for (;;) {
    const codes = codesFor(email);
    if (codes.length > seenBefore) return codes[codes.length - 1];
    if (Date.now() > deadline) {
      throw new Error(`no new sign-in code for ${email} in ${CODE_FILE} within ${CODE_WAIT_MS / 1000} s`);
    }
    await new Promise(r => setTimeout(r, 200));
  }
}

// The question pages of a share, in order. `answer` fills the page in.
const QUESTIONS = [
  {
    slug: 'recipients',
    h1: 'Who do you want to share with?',
    answer: () => choose('checkbox', 'Northshire Multi-Agency Safeguarding Hub'),
  },
  {
    slug: 'purpose',
    h1: 'Why are you sharing?',
    answer: () => choose('radio', 'Referral of a safeguarding concern'),
  },
  {
    slug: 'lawful-basis',
    h1: 'What is your lawful basis?',
    answer: () => choose('radio', 'Legitimate interests'),
  },
  {
    slug: 'kind',
    h1: 'What kind of information is it?',
    answer: () => choose('checkbox', 'Personal details'),
  },
  {
    slug: 'consent',
    h1: 'Consent',
    answer: async () => {
      await choose('radio', 'Not sought');
      await fillTextbox('Why was consent not sought?', 'Seeking consent could put the child at risk.');
    },
  },
  {
    slug: 'told',
    h1: 'Was the child or their carer told?',
    answer: async () => {
      const no = page.getByRole('radio', { name: /^\s*No\b/ });
      check((await no.count()) === 1, 'expected one radio labelled "No"');
      await no.check();
      await fillTextbox('Why not?', 'Telling them could put the child at more risk.');
    },
  },
  {
    slug: 'urgency',
    h1: 'How urgent is this?',
    answer: () => choose('radio', 'Routine'),
  },
  {
    slug: 'request',
    h1: 'Are you answering a request?',
    answer: async () => {
      const no = page.getByRole('radio', { name: /^\s*No\b/ });
      check((await no.count()) === 1, 'expected one radio labelled "No"');
      await no.check();
    },
  },
  {
    slug: 'what',
    h1: 'What are you sharing?',
    answer: async () => {
      await fillTextbox('Summary of what you are sharing', 'Concern raised at youth club on Tuesday.');
      const kind = page.getByRole('combobox', { name: startsWith('Kind of reference') });
      check((await kind.count()) === 1, 'expected one select labelled "Kind of reference"');
      await kind.selectOption({ label: 'Case reference' });
      check((await kind.inputValue()) === 'case', `"Case reference" has value "${await kind.inputValue()}", not "case"`);
      await fillTextbox('Reference', 'RY-2026-0042');
    },
  },
  {
    slug: 'why',
    h1: 'Why does this need to be shared?',
    answer: () => fillTextbox('Justification', 'Disclosure of harm at home; the MASH must assess.'),
  },
  {
    slug: 'marking',
    h1: 'Marking and how long to keep it',
    answer: async () => {
      // "OFFICIAL" and not "OFFICIAL-SENSITIVE"
      const official = page.getByRole('radio', { name: /^\s*OFFICIAL(?![-\w])/ });
      check((await official.count()) === 1, 'expected one radio labelled "OFFICIAL"');
      await official.check();
      const value = await official.getAttribute('value');
      check(value === 'OFFICIAL', `the "OFFICIAL" radio has value "${value}"`);
      const days = page.getByLabel('Days the recipient may keep it');
      check((await days.count()) === 1, 'expected one field labelled "Days the recipient may keep it"');
      const kept = await days.inputValue();
      check(kept.trim() !== '', '"Days the recipient may keep it" has no default');
    },
  },
];

// Answers the question pages in turn, from the first (already loaded); returns on reaching the
// check-your-answers page.
async function answerQuestions(prefix) {
  for (let i = 0; i < QUESTIONS.length; i++) {
    const q = QUESTIONS[i];
    await step(`${prefix}-${q.slug}`, async () => {
      await q.answer();
      await loading(() => continueButton().click());
    });
    const next = QUESTIONS[i + 1];
    const nextName = next ? `${prefix}-${String(i + 2).padStart(2, '0')}-${next.slug}` : prefix === 'share' ? 'check' : `${prefix}-check`;
    const nextH1 = next ? next.h1 : 'Check your answers';
    await step(nextName, () => arrived(nextName, nextH1));
  }
  return { refused: false };
}

async function isPage(h1) {
  await page.waitForLoadState('load', { timeout: NAV_TIMEOUT_MS });
  return (await page.getByRole('heading', { level: 1, name: h1 }).count()) === 1;
}

// ---------------------------------------------------------------------------------------------
// The journey

browser = await step('launch', () =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
    timeout: 30_000,
  }),
);
const context = await step('context', () =>
  browser.newContext({
    ignoreHTTPSErrors: true, // the dev gateway's certificate is self-signed
    javaScriptEnabled: JS === 'on',
    viewport: { width: 1024, height: 768 },
    locale: 'en-GB',
  }),
);
context.setDefaultTimeout(ACTION_TIMEOUT_MS);
context.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
page = await context.newPage();

// The status of each page's main document, and (below) what the browser reports.
function watch(p) {
  p.on('response', response => {
    if (response.request().isNavigationRequest() && response.frame() === p.mainFrame()) {
      lastStatus = response.status();
    }
  });
  p.on('console', message => {
    if (message.type() === 'error' && /Content[- ]Security[- ]Policy/i.test(message.text())) {
      browserProblem('csp', message.text());
    }
  });
  p.on('pageerror', error => browserProblem('pageerror', error.message));
}
watch(page);
// CSP violations and uncaught errors: each distinct one reported once, with how often it happened.
function browserProblem(kind, text) {
  const seen = state.browserProblems.find(p => p.kind === kind && p.text === text);
  if (seen) {
    seen.count += 1;
    return;
  }
  state.browserProblems.push({ kind, text, count: 1, first_step: currentStep, first_url: page.url() });
  log('NOTE', `${kind === 'csp' ? 'CSP violation' : 'uncaught page error'} at ${page.url()}: ${text}`);
}

log('NOTE', `Chromium ${browser.version()}, JavaScript ${JS}, ${BASE}`);

// Signs in `email` with the code the demo prints, from the sign-in page; lands on `home` (an h1).
async function signInAs(email, prefix, home) {
  await loading(() => page.goto(`${BASE}/`));
  await arrived(`${prefix}-sign-in`, 'Sign in');
  const before = codesFor(email).length;
  await page.getByRole('textbox', { name: startsWith('Email address') }).fill(email);
  await loading(() => continueButton().click());
  await arrived(`${prefix}-code`, 'Check your email');
  const code = await newCode(email, before);
  await page.getByRole('textbox', { name: startsWith('Sign-in code') }).fill(code);
  await loading(() => page.getByRole('button', { name: 'Sign in', exact: true }).click());
  await arrived(`${prefix}-home`, home);
}

async function signOut(name) {
  await loading(() => page.getByRole('button', { name: 'Sign out' }).first().click());
  await arrived(name, 'Sign in');
}

if (PART === 'tampered') {
  await step('tampered-sign-in', () => signInAs(DPO_EMAIL, 'tampered', 'Northshire Multi-Agency Safeguarding Hub'));
  await step('tampered-verify', async () => {
    await loading(() => page.getByRole('link', { name: 'Transfer log', exact: true }).first().click());
    await arrived('tampered-log', 'Transfer log');
    const verify = page.getByRole('button', { name: 'Verify now', exact: true });
    await tabTo(verify, 'the "Verify now" button');
    await loading(() => page.keyboard.press('Enter'));
    await arrived('tampered-verified', 'Verification');
    const text = await page.locator('main').innerText();
    check(text.includes('The log is broken'), 'the verification page does not say the log is broken');
    check(text.includes(`at record ${TAMPERED_SEQ}`), `the verification page does not locate the break at record ${TAMPERED_SEQ}`);
    check(/altered/.test(text), 'the verification page does not say the record was altered');
    await loading(() => page.goto(`${BASE}/log`));
    await arrived('tampered-log-after', 'Transfer log');
    const banner = await page.locator('.status').innerText();
    check(banner.includes('BROKEN'), `the log page's status does not say BROKEN: "${banner}"`);
    state.tampered = { broken: true, seq: Number(TAMPERED_SEQ) };
    log('NOTE', `the altered record ${TAMPERED_SEQ} was reported broken, with its location`);
  });
  log('OK', `${state.pages} pages, no accessibility violations (${AXE_TAGS.join(', ')})`);
  await finish(state.violations.length ? 1 : 0);
}

// A request for information, over the pages: the MASH asks the youth club in writing; the club
// reads it and answers it by sharing (the share flow starts addressed to the MASH, for the
// request's purpose and basis); the MASH sees it answered.
if (PART === 'requests') {
  state.request = { reference: null, answered: false, seen_by_requester: false };
  await step('rq-alex-sign-in', () => signInAs(MASH_EMAIL, 'rq-alex', 'Northshire Multi-Agency Safeguarding Hub'));
  await step('rq-ask', async () => {
    await loading(() => page.getByRole('link', { name: 'Ask for information' }).first().click());
    await arrived('rq-ask', 'Ask for information');
    // Sent empty, by keyboard alone: what to fix, each linked to its question.
    const send = page.getByRole('button', { name: 'Send the request', exact: true });
    await tabTo(send, 'the "Send the request" button', 80);
    await loading(() => page.keyboard.press('Enter'));
    await arrived('rq-ask-error', 'Ask for information');
    const summary = page.locator('[role=alert], .error-summary').first();
    check((await summary.locator('a[href="#holder"]').count()) === 1, 'the error summary has no link to #holder');
    check((await summary.locator('a[href="#ref_value"]').count()) === 1, 'the error summary has no link to #ref_value');
    await page.getByRole('combobox', { name: startsWith('Which organisation holds the information?') }).selectOption({ label: 'Riverside Youth Club' });
    await page.getByRole('combobox', { name: startsWith('Why do you need it?') }).selectOption({ label: "Referral of a safeguarding concern to children's social care" });
    await choose('radio', 'Legitimate interests');
    await fillTextbox('What information do you need?', 'Attendance and any concerns noted since September.');
    await fillTextbox('Your grounds', 'A contact about the child is being triaged by the MASH.');
    await page.getByRole('combobox', { name: startsWith('Kind of reference') }).selectOption({ label: 'Case reference' });
    await fillTextbox('Reference', 'RY-2026-0042');
    await loading(() => send.click());
    await arrived('rq-sent', 'Request sent');
    state.request.reference = (await page.locator('#reference').innerText()).trim();
    check(state.request.reference !== '', 'the request has no reference');
    const text = await page.locator('main').innerText();
    check(text.includes('Riverside Youth Club'), 'the confirmation does not name the organisation asked');
    await loading(() => page.getByRole('link', { name: 'Follow this request' }).click());
    await arrived('rq-follow', 'Request for information');
    check((await page.locator('main').innerText()).includes('Waiting for an answer'), 'the new request is not waiting for an answer');
  });
  // The club in a browser of its own, while the MASH stays signed in in the first (each
  // address may be sent only so many codes in 15 minutes).
  const alexPage = page;
  const clubContext = await step('rq-club-context', () =>
    browser.newContext({
      ignoreHTTPSErrors: true,
      javaScriptEnabled: JS === 'on',
      viewport: { width: 1024, height: 768 },
      locale: 'en-GB',
    }),
  );
  clubContext.setDefaultTimeout(ACTION_TIMEOUT_MS);
  clubContext.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
  page = await clubContext.newPage();
  watch(page);
  await step('rq-sam-sign-in', () => signInAs(EMAIL, 'rq-sam', 'Riverside Youth Club'));
  await step('rq-sam-sees', async () => {
    await loading(() => page.getByRole('link', { name: /request is waiting for an answer/ }).click());
    await arrived('rq-list', 'Requests for information');
    await loading(() => page.getByRole('table').getByRole('link', { name: state.request.reference, exact: true }).click());
    await arrived('rq-read', 'Request for information');
    const text = await page.locator('main').innerText();
    for (const seen of ['Northshire Multi-Agency Safeguarding Hub', 'Attendance and any concerns', 'Case reference: RY-2026-0042']) {
      check(text.includes(seen), `the holder's page does not show "${seen}"`);
    }
    await loading(() => page.getByRole('link', { name: 'Share the information' }).click());
    await arrived('rq-answer-01-kind', QUESTIONS[3].h1);
  });
  const answering = QUESTIONS.slice(3).map(q =>
    q.slug === 'request'
      ? { slug: 'request', h1: 'Does this answer the request in full?', answer: () => choose('radio', 'Yes, in full') }
      : q,
  );
  for (let i = 0; i < answering.length; i++) {
    const q = answering[i];
    await step(`rq-answer-${q.slug}`, async () => {
      await q.answer();
      await loading(() => continueButton().click());
    });
    const next = answering[i + 1];
    const name = next ? `rq-answer-${String(i + 2).padStart(2, '0')}-${next.slug}` : 'rq-answer-check';
    await step(name, () => arrived(name, next ? next.h1 : 'Check your answers'));
  }
  await step('rq-answer-send', async () => {
    const text = await page.locator('main').innerText();
    check(text.includes(`Request ${state.request.reference}, in full`), 'check your answers does not say which request this answers');
    const dir = mkdtempSync(join(tmpdir(), 'postern-journey-'));
    const file = join(dir, 'attendance.txt');
    writeFileSync(file, 'Attendance: weekly since September. No concerns noted.\n');
    await page.getByLabel('File to share').setInputFiles(file);
    await loading(() => page.getByRole('button', { name: 'Send', exact: true }).click());
    await arrived('rq-answered', /^\s*Shared\s*$/);
    rmSync(dir, { recursive: true, force: true });
    await loading(() => page.goto(`${BASE}/requests`));
    await arrived('rq-list-answered', 'Requests for information');
    const row = page.getByRole('row', { name: new RegExp(state.request.reference) });
    check((await row.innerText()).includes('Answered'), 'the answered request is not shown answered');
    state.request.answered = true;
  });
  const clubPage = page;
  page = alexPage;
  await step('rq-alex-sees', async () => {
    await loading(() => page.goto(`${BASE}/requests`));
    await arrived('rq-alex-list', 'Requests for information');
    await loading(() => page.getByRole('table').getByRole('link', { name: state.request.reference, exact: true }).last().click());
    await arrived('rq-alex-answered', 'Request for information');
    const text = await page.locator('main').innerText();
    check(text.includes('Answered') && text.includes('answers it in full'), 'the requester does not see the request answered');
    state.request.seen_by_requester = true;
  });
  // The MASH tells the club what became of the answer; the club sees it on its share's page.
  await step('rq-feedback', async () => {
    await loading(() => page.goto(`${BASE}/inbox`));
    await arrived('rq-alex-inbox', 'What has arrived');
    await loading(() => page.getByRole('table').getByRole('link', { name: /^Open/ }).last().click());
    await arrived('rq-alex-item', 'Shared with you');
    check((await page.locator('main').innerText()).includes(`Your request ${state.request.reference}, in full`), 'the answering share does not say which request it answers');
    await choose('radio', 'Acted on: assessment started');
    await fillTextbox('A short note', 'Thank you: this helped the triage.');
    await loading(() => page.getByRole('button', { name: 'Send feedback', exact: true }).click());
    await arrived('rq-alex-fed-back', 'Shared with you');
    check((await page.locator('main').innerText()).includes('You told them'), 'the item does not say what the MASH told the club');
    await signOut('rq-alex-signed-out');
    page = clubPage;
    await loading(() => page.goto(`${BASE}/transfers`));
    await arrived('rq-sam-transfers', 'Your shares');
    await loading(() => page.getByRole('table').getByRole('link').first().click());
    await arrived('rq-sam-transfer', 'Shared information');
    const text = await page.locator('main').innerText();
    check(text.includes('Acted on: assessment started') && text.includes('helped the triage'), "the club's share page does not show the MASH's feedback");
    state.request.feedback_seen = true;
    await signOut('rq-sam-signed-out');
  });
  if (state.violations.length) {
    state.failed = 'axe';
    await finish(1);
  }
  log('OK', `${state.pages} pages, no accessibility violations (${AXE_TAGS.join(', ')})`);
  await finish(0);
}

// a. The start page sends a stranger to sign in.
await step('sign-in', async () => {
  await loading(() => page.goto(`${BASE}/`));
  await arrived('sign-in', 'Sign in');
  const email = page.getByRole('textbox', { name: startsWith('Email address') });
  check((await email.count()) === 1, 'expected one text field labelled "Email address"');
  check((await email.getAttribute('name')) === 'email', 'the "Email address" field is not named "email"');
  check((await continueButton().count()) === 1, 'expected one button "Continue"');
});

// An empty email, submitted by keyboard alone: the error summary.
await step('sign-in-error', async () => {
  await tabTo(continueButton(), 'the "Continue" button');
  await loading(() => page.keyboard.press('Enter'));
  await arrived('sign-in-error', 'Sign in');
  const summary = page.locator('[role=alert], .error-summary').first();
  check((await summary.count()) === 1, 'no error summary (role=alert or class error-summary)');
  const title = (await summary.innerText()).replace(/\s+/g, ' ');
  check(/There is a problem/.test(title), `the error summary does not say "There is a problem": "${title}"`);
  const link = summary.locator('a[href="#email"]');
  check((await link.count()) >= 1, 'the error summary has no link to #email');
});

// b. The email, typed and submitted by keyboard alone.
const codesBefore = codesFor(EMAIL).length;
await step('email', async () => {
  const email = page.getByRole('textbox', { name: startsWith('Email address') });
  await tabTo(email, 'the "Email address" field');
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.type(EMAIL);
  await tabTo(continueButton(), 'the "Continue" button', 10);
  await loading(() => page.keyboard.press('Space'));
  await arrived('code', 'Check your email');
  const code = page.getByRole('textbox', { name: startsWith('Sign-in code') });
  check((await code.count()) === 1, 'expected one text field labelled "Sign-in code"');
  check((await code.getAttribute('name')) === 'code', 'the "Sign-in code" field is not named "code"');
  const ac = await code.getAttribute('autocomplete');
  check(ac === 'one-time-code', `the "Sign-in code" field has autocomplete="${ac}", not "one-time-code"`);
  check((await page.getByRole('button', { name: 'Sign in', exact: true }).count()) === 1, 'no button "Sign in"');
  check((await page.getByRole('link', { name: 'Send a new code' }).count()) === 1, 'no link "Send a new code"');
});

// c. The code from the mail, typed by keyboard; Enter submits.
await step('code', async () => {
  const code = await newCode(EMAIL, codesBefore);
  await tabTo(page.getByRole('textbox', { name: startsWith('Sign-in code') }), 'the "Sign-in code" field');
  await page.keyboard.type(code);
  await loading(() => page.keyboard.press('Enter'));
  await arrived('home', 'Riverside Youth Club');
  check((await page.getByRole('link', { name: 'Your shares' }).count()) >= 1, 'no link "Your shares"');
});

// c2. "Passkeys" in the header: adding one needs the browser's WebAuthn API, so with
// JavaScript off the page says so, and signing in with a code goes on working.
await step('passkeys-page', async () => {
  await loading(() => page.getByRole('link', { name: 'Passkeys', exact: true }).click());
  await arrived('passkeys', 'Your passkeys');
  const add = page.getByRole('button', { name: 'Add a passkey', exact: true });
  const needs = page.getByText('Adding a passkey needs JavaScript');
  if (JS === 'on') {
    check(await add.isVisible(), 'no visible button "Add a passkey" with JavaScript on');
    check(!(await needs.isVisible()), 'the page says passkeys need JavaScript, with JavaScript on');
  } else {
    check(!(await add.isVisible()), 'a button "Add a passkey" shows with JavaScript off');
    check(await needs.isVisible(), 'the page does not say that adding a passkey needs JavaScript');
  }
  await loading(() => page.getByRole('link', { name: 'Back to the start' }).click());
  await arrived('home-again', 'Riverside Youth Club');
});

// d. A share, question by question.
await step('share-start', async () => {
  const start = page.getByRole('link', { name: 'Share information about a child' });
  check((await start.count()) >= 1, 'no link "Share information about a child"');
  await loading(() => start.first().click());
  await arrived('share-01-recipients', QUESTIONS[0].h1);
});
await answerQuestions('share');

const payload = randomBytes(4096);
state.payloadSha256 = createHash('sha256').update(payload).digest('hex');
payloadDir = mkdtempSync(join(tmpdir(), 'postern-journey-'));
const payloadPath = join(payloadDir, 'concern.bin');
writeFileSync(payloadPath, payload);
log('NOTE', `payload ${payloadPath}: 4096 bytes, sha256 ${state.payloadSha256}`);

await step('send', async () => {
  const main = page.locator('main');
  const text = await ((await main.count()) ? main.first() : page.locator('body')).innerText();
  for (const answer of ['Northshire Multi-Agency Safeguarding Hub', 'RY-2026-0042']) {
    check(text.includes(answer), `the answers do not show "${answer}"`);
  }
  const file = page.getByLabel('File to share');
  check((await file.count()) === 1, 'expected one field labelled "File to share"');
  check((await file.getAttribute('name')) === 'payload', 'the "File to share" field is not named "payload"');
  const max = Number(await file.getAttribute('data-max-bytes'));
  check(max > 0, 'the file field does not say the largest size (data-max-bytes)');
  if (JS === 'on') {
    // The size is checked before anything is uploaded, where the browser knows it: the limit
    // is lowered below this file's size, as if the file were too large, and Send stays here.
    await file.evaluate(el => { el.dataset.maxBytes = '100'; });
    await file.setInputFiles(payloadPath);
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    const error = page.locator('#payload-size-error');
    await error.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT_MS });
    check((await error.innerText()).includes('larger than'), 'the size error does not say the file is too large');
    check(await isPage('Check your answers'), 'a file over the limit left the page');
    check(await file.evaluate(el => el === document.activeElement), 'the file field does not have focus after the size error');
    await axeCheck('check-too-large');
    await file.evaluate((el, m) => { el.dataset.maxBytes = String(m); }, max);
  }
  await file.setInputFiles(payloadPath);
  await loading(() => page.getByRole('button', { name: 'Send', exact: true }).click());
  await arrived('confirmation', /^\s*Shared\s*$/);
  const reference = (await page.locator('#reference').innerText()).trim();
  check(reference !== '', 'the element with id "reference" is empty');
  state.reference = reference;
  log('NOTE', `reference ${reference}`);
});

// e. The share in "Your shares", and its delivery.
await step('transfers', async () => {
  await loading(() => page.getByRole('link', { name: 'Your shares' }).first().click());
  await arrived('transfers', 'Your shares');
  check((await page.getByRole('table').count()) >= 1, 'no table on "Your shares"');
  const row = page.getByRole('table').getByRole('link', { name: state.reference, exact: true });
  check((await row.count()) === 1, `the table has no link "${state.reference}"`);
  await loading(() => row.click());
  await arrived('transfer', 'Shared information');
});

await step('delivered', async () => {
  const deadline = Date.now() + DELIVERY_WAIT_MS;
  for (;;) {
    const text = await page.locator('body').innerText();
    if (text.includes('Delivered')) break;
    if (Date.now() > deadline) throw new Error(`not "Delivered" within ${DELIVERY_WAIT_MS / 1000} s`);
    await new Promise(r => setTimeout(r, 500));
    await loading(() => page.reload());
  }
  await arrived('delivered', 'Shared information');
});

// e2. A decision not to share, recorded: what to fix first, then the confirmation.
await step('decline', async () => {
  await loading(() => page.goto(`${BASE}/decline`));
  await arrived('decline', 'Record a decision not to share');
  await loading(() => page.getByRole('button', { name: 'Record the decision', exact: true }).click());
  await arrived('decline-error', 'Record a decision not to share');
  const summary = page.locator('[role=alert], .error-summary').first();
  check((await summary.count()) === 1, 'no error summary on the decision page');
  check((await summary.locator('a[href="#to"]').count()) === 1, 'the error summary has no link to #to');
  await choose('checkbox', 'Northshire Multi-Agency Safeguarding Hub');
  await fillTextbox('Why did you decide not to share?', 'Below the threshold; early help offered instead.');
  await loading(() => page.getByRole('button', { name: 'Record the decision', exact: true }).click());
  await arrived('declined', 'Decision recorded');
});

// f. A share the policy refuses. The pages only offer what the agreements allow, so the form
// is altered as someone with the browser's developer tools could: the purpose becomes the
// s.115 crime-prevention gateway, which a voluntary organisation may not use. The server
// must refuse it with the plain-words page, and say it was recorded.
await step('refused-start', async () => {
  await loading(() => page.goto(`${BASE}/share`));
  await arrived('refused-01-recipients', QUESTIONS[0].h1);
});
await answerQuestions('refused');
await step('refused', async () => {
  const purpose = page.locator('form[action="/share/send"] input[name="purpose"]');
  check((await purpose.count()) === 1, 'the send form carries no hidden "purpose"');
  await purpose.evaluate(el => { el.value = 'crime-prevention-s115'; });
  await page.getByLabel('File to share').setInputFiles(payloadPath);
  await loading(() => page.getByRole('button', { name: 'Send', exact: true }).click());
  await arrived('refused', 'Not shared');
  const text = await page.locator('main').innerText();
  check(lastStatus === 403, `the refusal answered ${lastStatus}, not 403`);
  check(text.includes('recorded'), 'the refusal page does not say the refusal was recorded');
  check(text.includes('one of the rules'), 'the refusal page does not say a rule refused it');
  state.refused = { url: page.url(), status: lastStatus };
  log('NOTE', 'refused with the plain-words page (403)');
});

// g. Sign out, and the session is gone.
await step('sign-out', async () => {
  const signOut = page.getByRole('button', { name: 'Sign out' });
  check((await signOut.count()) >= 1, 'no button "Sign out"');
  await loading(() => signOut.first().click());
  await arrived('signed-out', 'Sign in');
  await loading(() => page.goto(`${BASE}/transfers`));
  check(await isPage('Sign in'), `after signing out, /transfers shows ${JSON.stringify(await h1Texts())}, not "Sign in"`);
});

// h. The MASH's social worker signs in, finds the share in "What has arrived", reads who sent
// it and why, downloads the file (decrypted by the gateway as it streams) and acknowledges it.
await step('mash-sign-in', async () => {
  const before = codesFor(MASH_EMAIL).length;
  await page.getByRole('textbox', { name: startsWith('Email address') }).fill(MASH_EMAIL);
  await loading(() => continueButton().click());
  await arrived('mash-code', 'Check your email');
  const code = await newCode(MASH_EMAIL, before);
  await page.getByRole('textbox', { name: startsWith('Sign-in code') }).fill(code);
  await loading(() => page.getByRole('button', { name: 'Sign in', exact: true }).click());
  // This sign-in page came from asking for /transfers: signing in leads back there.
  await arrived('mash-after-sign-in', 'Your shares');
  check(new URL(page.url()).pathname === '/transfers', `signing in led to ${page.url()}, not /transfers`);
  await loading(() => page.getByRole('link', { name: /^Postern/ }).first().click());
  await arrived('mash-home', 'Northshire Multi-Agency Safeguarding Hub');
});
await step('mash-inbox', async () => {
  const waiting = page.getByRole('link', { name: /waiting for your organisation/ });
  check((await waiting.count()) === 1, 'the home page does not say that something is waiting');
  await loading(() => waiting.click());
  await arrived('mash-inbox', 'What has arrived');
  const open = page.getByRole('table').getByRole('link', { name: /^Open/ });
  check((await open.count()) >= 1, 'nothing listed in "What has arrived"');
  await loading(() => open.last().click());
  await arrived('mash-item', 'Shared with you');
  const text = await page.locator('main').innerText();
  for (const expected of ['Riverside Youth Club', 'RY-2026-0042', 'Sam Okafor', 'Concern raised at youth club on Tuesday.']) {
    check(text.includes(expected), `the item's page does not show "${expected}"`);
  }
});
await step('mash-download', async () => {
  const link = page.getByRole('link', { name: 'Download the file' });
  check((await link.count()) === 1, 'no link "Download the file"');
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: NAV_TIMEOUT_MS }), link.click()]);
  const path = await download.path();
  const got = readFileSync(path);
  state.mashSha256 = createHash('sha256').update(got).digest('hex');
  check(state.mashSha256 === state.payloadSha256, `the MASH downloaded ${got.length} bytes with sha256 ${state.mashSha256}, not the file the club sent`);
  log('NOTE', `the MASH's download equals the file sent (${got.length} bytes)`);
});
await step('mash-acknowledge', async () => {
  await loading(() => page.getByRole('button', { name: 'Acknowledge', exact: true }).click());
  await arrived('mash-acknowledged', 'Shared with you');
  check((await page.locator('main').innerText()).includes('You have acknowledged this item'), 'the item does not say it was acknowledged');
  const signOut = page.getByRole('button', { name: 'Sign out' });
  await loading(() => signOut.first().click());
  await arrived('mash-signed-out', 'Sign in');
});

// i. Millbrook Academy asks its staff to sign in with passkeys. Jo has none yet: her code signs
// her in to add one and to do nothing else. She adds one (Chromium's virtual authenticator,
// over the DevTools protocol, stands in for her laptop's fingerprint reader), signs out, and
// signs in with it. After that, asking for a code sends her none. JavaScript on only: the
// WebAuthn API is JavaScript.
if (JS === 'on') {
  await step('passkey-authenticator', async () => {
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
  });
  await step('passkey-required', async () => {
    const before = codesFor(DSL_EMAIL).length;
    await page.getByRole('textbox', { name: startsWith('Email address') }).fill(DSL_EMAIL);
    await loading(() => continueButton().click());
    await arrived('dsl-code', 'Check your email');
    const code = await newCode(DSL_EMAIL, before);
    await page.getByRole('textbox', { name: startsWith('Sign-in code') }).fill(code);
    await loading(() => page.getByRole('button', { name: 'Sign in', exact: true }).click());
    await arrived('passkeys-required', 'Your passkeys');
    const text = await page.locator('main').innerText();
    check(text.includes('asks everyone to sign in with a passkey'), 'the page does not say a passkey is required');
    await loading(() => page.goto(`${BASE}/share`));
    check(await isPage('Your passkeys'), `without a passkey, /share shows ${JSON.stringify(await h1Texts())}`);
  });
  await step('passkey-add', async () => {
    await fillTextbox('Name it', 'Work laptop');
    await loading(() => page.getByRole('button', { name: 'Add a passkey', exact: true }).click());
    await arrived('passkey-added', 'Your passkeys');
    const text = await page.locator('main').innerText();
    check(text.includes('Your passkey was added'), 'the page does not say the passkey was added');
    check(text.includes('Work laptop'), 'the passkey "Work laptop" is not listed');
    await loading(() => page.getByRole('button', { name: 'Sign out' }).first().click());
    await arrived('passkey-signed-out', 'Sign in');
  });
  await step('passkey-sign-in', async () => {
    await page.getByRole('textbox', { name: startsWith('Email address') }).fill(DSL_EMAIL);
    const button = page.getByRole('button', { name: 'Sign in with a passkey', exact: true });
    check(await button.isVisible(), 'no visible button "Sign in with a passkey"');
    await loading(() => button.click());
    await arrived('passkey-home', 'Millbrook Academy');
    await loading(() => page.getByRole('button', { name: 'Sign out' }).first().click());
    await arrived('passkey-home-signed-out', 'Sign in');
  });
  await step('passkey-no-code', async () => {
    const before = codesFor(DSL_EMAIL).length;
    await page.getByRole('textbox', { name: startsWith('Email address') }).fill(DSL_EMAIL);
    await loading(() => continueButton().click());
    await arrived('passkey-no-code', 'Check your email');
    await new Promise(r => setTimeout(r, 2000));
    check(codesFor(DSL_EMAIL).length === before, 'a code was sent to Jo, whose organisation requires her passkey');
    state.passkey = { added: true, signed_in: true, code_withheld: true };
    log('NOTE', 'a passkey was added and signed in with; no code was sent afterwards');
  });
}

// j. The MASH's DPO (an auditor of the whole gateway) answers a DPO's questions: the records,
// filtered; one record's grounds and deliveries; everything about one child, by the reference
// the club gave (typed in another case); an export; the report; who looked. Then "why was this
// refused?" opens explain, pre-filled, from the refusal.
await step('dpo-sign-in', () => signInAs(DPO_EMAIL, 'dpo', 'Northshire Multi-Agency Safeguarding Hub'));
state.dpo = {};
await step('dpo-log', async () => {
  await loading(() => page.getByRole('link', { name: 'Transfer log', exact: true }).first().click());
  await arrived('dpo-log', 'Transfer log');
  const text = await page.locator('main').innerText();
  check(/Verified intact|being verified/.test(text), 'the log page does not show the verification status');
  const purpose = page.getByRole('combobox', { name: 'Purpose', exact: true });
  await tabTo(purpose, 'the "Purpose" filter', 60);
  await purpose.selectOption({ label: 'Referral of a safeguarding concern to children\'s social care' });
  await page.getByRole('combobox', { name: 'Decision', exact: true }).selectOption({ label: 'Shared' });
  await loading(() => page.getByRole('button', { name: 'Show records', exact: true }).click());
  await arrived('dpo-log-filtered', 'Transfer log');
  const url = new URL(page.url());
  check(url.searchParams.get('decision') === 'shared' && url.searchParams.get('purpose') === 'safeguarding-referral', `the filters are not in the URL: ${page.url()}`);
  const rows = page.getByRole('table').getByRole('row');
  check((await rows.count()) >= 2, 'no record matches the filter');
  check(!(await page.getByRole('table').innerText()).includes('Refused'), 'a refusal is listed under decision "Shared"');
  state.dpo.filtered = true;
});
await step('dpo-record', async () => {
  const open = page.getByRole('table').getByRole('link', { name: /open the record/ });
  await loading(() => open.first().click());
  await arrived('dpo-record', /^Record /);
  const text = await page.locator('main').innerText();
  for (const expected of ['Riverside Youth Club', 'Legitimate interests', 'Disclosure of harm at home', 'Delivery, now', 'Who opened it']) {
    check(text.includes(expected), `the record's page does not show "${expected}"`);
  }
  state.dpo.record = true;
});
await step('dpo-subject', async () => {
  await loading(() => page.getByRole('link', { name: 'Subject access', exact: true }).click());
  await arrived('dpo-subject-form', 'Subject access');
  await page.getByRole('combobox', { name: 'Kind of reference' }).selectOption({ label: 'Case reference' });
  await fillTextbox('Reference', 'ry-2026-0042');
  await loading(() => page.getByRole('button', { name: 'Search', exact: true }).click());
  await arrived('dpo-subject', 'Subject access');
  const text = await page.locator('main').innerText();
  const found = text.match(/(\d+) decisions? about this person/);
  check(found && Number(found[1]) >= 2, `the subject search found ${found ? found[1] : 'nothing'}, not the share and the refusal`);
  state.dpo.subject = Number(found[1]);
});
await step('dpo-export', async () => {
  await loading(() => page.getByRole('link', { name: 'Records', exact: true }).click());
  await arrived('dpo-log-again', 'Transfer log');
  const link = page.getByRole('link', { name: 'Download as CSV' });
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: NAV_TIMEOUT_MS }), link.click()]);
  const text = readFileSync(await download.path(), 'utf8');
  const [first, header] = text.split('\n');
  check(first.includes('Postern transfer log export'), `the export's first line is "${first}"`);
  check(header.startsWith('seq,at,kind,decision'), `the export's header row is "${header}"`);
  state.dpo.exported = text.split('\n').filter(l => l.trim()).length - 2;
});
await step('dpo-report', async () => {
  await loading(() => page.getByRole('link', { name: 'Report', exact: true }).click());
  await arrived('dpo-report', 'Report');
  check((await page.locator('svg.chart-svg').count()) >= 3, 'the report draws fewer than three charts');
  check((await page.locator('table.chart-table').count()) === (await page.locator('svg.chart-svg').count()), 'a chart has no table beside it');
  state.dpo.report = true;
});
await step('dpo-access', async () => {
  await loading(() => page.getByRole('link', { name: 'Who looked', exact: true }).click());
  await arrived('dpo-access', 'Who looked');
  const text = await page.locator('main').innerText();
  check(text.includes('Searched for a person') && text.includes('Exported records'), 'who looked does not list the search and the export');
});
await step('dpo-refusal', async () => {
  await loading(() => page.goto(`${BASE}/log?decision=refused`));
  await arrived('dpo-refusals', 'Transfer log');
  await loading(() => page.getByRole('table').getByRole('link', { name: /open the record/ }).first().click());
  await arrived('dpo-refused-record', /^Record /);
  const why = page.getByRole('link', { name: /Why was this refused/ });
  check((await why.count()) === 1, 'a refusal has no "Why was this refused?" link');
  await loading(() => why.click());
  await arrived('dpo-explain', /explain|Explain|Why/);
  const text = await page.locator('main').innerText();
  check(/refused|Refused/.test(text), 'explain, pre-filled from the refusal, does not say the share would be refused');
  state.dpo.explained = true;
  await signOut('dpo-signed-out');
});

// k. The council's IT officer: the registry, one organisation, the configuration's status.
await step('admin-sign-in', () => signInAs(ADMIN_EMAIL, 'admin', 'Northshire County Council'));
await step('admin-registry', async () => {
  await loading(() => page.getByRole('link', { name: 'Registry', exact: true }).first().click());
  await arrived('admin-registry', /./);
  const text = await page.locator('main').innerText();
  check(text.includes('Riverside Youth Club') && text.includes('Northshire Multi-Agency Safeguarding Hub'), 'the registry does not list the organisations by name');
  await loading(() => page.getByRole('link', { name: 'Riverside Youth Club' }).first().click());
  await arrived('admin-organisation', 'Riverside Youth Club');
  check((await page.locator('main').innerText()).includes('Sam Okafor'), "the organisation's page does not list its people");
  await loading(() => page.goto(`${BASE}/status`));
  await arrived('admin-status', /./);
  check((await page.locator('main').innerText()).includes('start-up'), 'the status page does not say when the configuration was loaded');
  await signOut('admin-signed-out');
});

if (state.browserProblems.length) {
  await step('browser-problems', () => {
    const n = state.browserProblems.reduce((sum, p) => sum + p.count, 0);
    throw new Error(`${n} CSP violation(s) or uncaught page error(s) (${state.browserProblems.length} distinct); see NOTE lines`);
  });
}
if (state.violations.length) {
  state.failed = 'axe';
  console.log(`FAILED: axe: ${state.violations.length} accessibility violation(s) on ${new Set(state.violations.map(v => v.page)).size} page(s)`);
  await finish(1);
}
log('OK', `${state.pages} pages, no accessibility violations (${AXE_TAGS.join(', ')})`);
await finish(0);
