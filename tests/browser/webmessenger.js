// Drives the era's Web Messenger (npm `smooch` 3.9.3, bundled into build/smooch.js by
// bundle-webmessenger.js) in headless Chromium against a gateway, as a user would: a page
// served from its own origin loads the widget, calls Smooch.init({appToken, userId,
// serviceUrl}), opens it, types a message and submits it, then waits for what the app maker
// answers to show up in the widget, live over /faye. It prints one line per step:
//   READY <appUser _id> <conversationStarted>   init finished, the widget is rendered
//   SENT <text>                                  the widget posted a message (201); twice
//   TYPING                                       the app maker's typing indicator is shown
//   RECEIVED <text>                              an app-maker message with WM_EXPECT is in the DOM
//   SHOWN <n>                                    the user's messages the widget then shows
//   OTHER READY                                  (with WM_OTHER_APP_TOKEN) the other app's widget
//                                                started, as the same userId, and sent a message
//   OTHER_READ <status>                          its REST read of this user's conversation
//   WAITING                                      for `REPLIED` on stdin
//   OTHER_SAW <n>                                app-maker messages its DOM shows, after RECEIVED
//   DONE
// It waits for a line `REPLIED` on stdin before looking for the app maker's typing indicator,
// so the test can check the server side first. Exit 2 on a timeout, 1 on any other failure; the
// page's console errors go to stderr.
// Settings (environment): WM_BASE (the gateway's base URL), WM_APP_TOKEN, WM_USER_ID
// (optional), WM_TEXT and WM_SECOND_TEXT (what the user types), WM_EXPECT (the reply to wait for),
// WM_OTHER_APP_TOKEN (optional), WM_TIMEOUT_MS, WM_CHROMIUM (the browser; by default
// Debian's chromium).
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

const base = process.env.WM_BASE;
const appToken = process.env.WM_APP_TOKEN;
const userId = process.env.WM_USER_ID || '';
const texts = [process.env.WM_TEXT || 'Hello from the Web Messenger', process.env.WM_SECOND_TEXT || 'Anyone there?'];
const expect = process.env.WM_EXPECT;
const otherToken = process.env.WM_OTHER_APP_TOKEN || '';
const timeout = Number(process.env.WM_TIMEOUT_MS || '60000');
const bundle = path.join(__dirname, 'build', 'smooch.js');

function chromiumPath() {
  if (process.env.WM_CHROMIUM) return process.env.WM_CHROMIUM;
  // Debian's /usr/bin/chromium is a shell wrapper; the binary behind it starts the same.
  for (const candidate of ['/usr/lib/chromium/chromium', '/usr/bin/chromium']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error('chromium is not installed: run scripts/browser-up.sh');
}

const say = (line) => console.log(line);

// The host page, on an origin of its own, as a customer's site would embed the widget.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Web Messenger test page</title></head>
<body><h1>A customer's page</h1><script src="/smooch.js"></script></body></html>`;

function servePage() {
  const script = fs.readFileSync(bundle);
  const server = http.createServer((req, res) => {
    if (req.url === '/smooch.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      res.end(script);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// Opens a fresh context (its own storage, so its own device id) on the page and starts the
// widget with `token`; answers the page and what init resolved with.
async function startWidget(browser, origin, token, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (msg) => {
    // Resources of the hosted CDN (avatars, sounds) cannot load here; they are not errors of
    // the suite, but name them anyway.
    if (msg.type() === 'error') console.error(`[${label} console] ${msg.text()} ${msg.location().url || ''}`);
  });
  page.on('pageerror', (error) => console.error(`[${label} pageerror] ${error.message}`));
  await page.goto(origin);
  const user = await page.evaluate(
    ({ appToken, userId, serviceUrl }) =>
      window.Smooch.init({ appToken, userId: userId || undefined, serviceUrl }).then((u) => ({
        _id: u._id,
        conversationStarted: !!u.conversationStarted,
      })),
    { appToken: token, userId, serviceUrl: base },
  );
  // Open it as a user does: the launcher button (displayStyle "button") or the tab header.
  const launcher = page.locator('#sk-messenger-button:visible, #sk-header:visible').first();
  await launcher.click();
  await page.locator('#sk-footer input.message-input').waitFor({ state: 'visible' });
  return { page, user };
}

// Types `message` into the widget's text box and submits its form (Enter), as a user would;
// resolves once the widget posted it (201) and shows it.
async function send(page, message) {
  const input = page.locator('#sk-footer input.message-input');
  const posted = page.waitForResponse(
    (r) => r.request().method() === 'POST' && /\/v1\/appusers\/[^/]+\/messages$/i.test(r.url()),
  );
  await input.click();
  await input.pressSequentially(message);
  await input.press('Enter');
  const response = await posted;
  if (response.status() !== 201) throw new Error(`posting the message answered ${response.status()}`);
  // first(): a duplicate (its echo shown again) is for SHOWN to report.
  await page.locator('.sk-right-row .sk-message-text', { hasText: message }).first().waitFor();
}

async function main() {
  if (!base || !appToken || !expect) throw new Error('WM_BASE, WM_APP_TOKEN and WM_EXPECT are required');
  if (!fs.existsSync(bundle)) throw new Error(`${bundle} is missing: run scripts/browser-up.sh`);
  const lines = readline.createInterface({ input: process.stdin });
  const replied = new Promise((resolve) => {
    lines.on('line', (line) => line.trim() === 'REPLIED' && resolve());
  });

  const server = await servePage();
  const origin = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true });
  try {
    const { page, user } = await startWidget(browser, origin, appToken, 'widget');
    say(`READY ${user._id} ${user.conversationStarted}`);

    // The first message starts the conversation (the widget subscribes after it); the
    // second goes out subscribed, so its echo over /faye must be recognised as its own.
    for (const message of texts) {
      await send(page, message);
      say(`SENT ${message}`);
    }

    let other;
    if (otherToken) {
      other = await startWidget(browser, origin, otherToken, 'other');
      // Its own conversation, so it is subscribed on /faye while the reply goes out.
      await send(other.page, 'Hello from the same userId in another app');
      say('OTHER READY');
      // The other app's credentials, reading this app's user's conversation (the 404 shows
      // in its console).
      const status = await other.page.evaluate(
        ({ serviceUrl, id, token }) =>
          fetch(`${serviceUrl}/v1/appusers/${encodeURIComponent(id)}/conversation`, {
            headers: { 'app-token': token },
          }).then((r) => r.status),
        { serviceUrl: base, id: user._id, token: otherToken },
      );
      say(`OTHER_READ ${status}`);
    }

    // The test posts typing:start, then the reply, once it has checked the server side.
    say('WAITING');
    await replied;
    await page.locator('.sk-typing-indicator').waitFor();
    say('TYPING');
    const reply = page.locator('.sk-left-row .sk-message-text', { hasText: expect });
    await reply.waitFor();
    say(`RECEIVED ${(await reply.innerText()).trim()}`);
    // Everything before the reply has arrived over /faye by now, echoes included.
    say(`SHOWN ${await page.locator('.sk-right-row .sk-message-text').count()}`);

    if (other) {
      // Give a leaked delivery the time to arrive before counting.
      await other.page.waitForTimeout(1000);
      const seen = await other.page.locator('.sk-left-row .sk-message-text').count();
      say(`OTHER_SAW ${seen}`);
    }
    say('DONE');
  } finally {
    await browser.close();
    server.close();
    lines.close();
  }
}

const timer = setTimeout(() => {
  say('TIMEOUT');
  process.exit(2);
}, timeout);

main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (error) => {
    console.error(error && error.stack ? error.stack : error);
    say(`FAILED ${error && error.message ? error.message.split('\n')[0] : error}`);
    process.exit(1);
  },
);
