// Drives the suite through an official smooch-core release, unchanged, with its public API
// only. Run by tests/tests/e2e/clients.rs; prints `OK <step>` per step and exits non-zero
// with `FAIL <step> <detail>` on the first failure.
//
// Environment: SMOOCH_CORE (1, 2 or 3), BASE (the gateway, without /v1), APP_ID, APP_TOKEN,
// KEY_ID, SECRET (a key of the app), OTHER_APP_ID, OTHER_KEY_ID, OTHER_SECRET (another app),
// ACCOUNT_KEY_ID, ACCOUNT_SECRET (the operator's account key).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const version = process.env.SMOOCH_CORE;
// The Node of the clients' era had no global fetch or FormData: their node wrapper and
// isomorphic-fetch install `form-data` and node-fetch 1.x only when none exist. Node >= 18's
// built-ins would be used instead, and cannot send a `form-data` body (every upload would
// send "[object Object]"). Removing them runs the clients as they ran then.
for (const name of ['fetch', 'FormData', 'Headers', 'Request', 'Response']) delete global[name];
const Smooch = require(`smooch-core-${version}`);
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const serviceUrl = `${env('BASE')}/v1`;
const appId = env('APP_ID');
const run = Date.now().toString(36);

function check(condition, detail) {
  if (!condition) throw new Error(detail);
}

async function step(name, body) {
  try {
    await body();
    console.log(`OK ${name}`);
  } catch (e) {
    const detail = e && e.response ? `${e.response.status} ${e.response.statusText}` : '';
    console.log(`FAIL ${name} ${detail} ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
}

/** Expects the call to be refused with `status`. */
async function refused(status, call) {
  try {
    await call();
  } catch (e) {
    check(e.response && e.response.status === status,
      `expected ${status}, got ${e.response ? e.response.status : e}`);
    return;
  }
  throw new Error(`expected ${status}, but the call succeeded`);
}

const app = new Smooch({ keyId: env('KEY_ID'), secret: env('SECRET'), scope: 'app' }, { serviceUrl });
const byToken = new Smooch({ appToken: env('APP_TOKEN') }, { serviceUrl });
const other = new Smooch({ keyId: env('OTHER_KEY_ID'), secret: env('OTHER_SECRET'), scope: 'app' }, { serviceUrl });
/** A client with the user's own JWT, which the client mints from the app's key. */
const asUser = (userId) => new Smooch({ keyId: env('KEY_ID'), secret: env('SECRET'), scope: 'appUser', userId }, { serviceUrl });

function png() {
  // A 1x1 PNG.
  const file = path.join(os.tmpdir(), `smooch-core-${version}-${run}.png`);
  fs.writeFileSync(file, Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
    'base64'));
  return file;
}

async function common(userId) {
  let appUserId;
  await step('init with the app token', async () => {
    const res = await byToken.appUsers.init({ device: { id: `device-${run}`, platform: 'web' }, userId });
    check(res.appUser && res.appUser.userId === userId, JSON.stringify(res));
    check(res.app && res.app._id === appId, 'init answers the app');
    appUserId = res.appUser._id;
  });
  await step('appUsers.get', async () => {
    const res = await app.appUsers.get(userId);
    check(res.appUser._id === appUserId, JSON.stringify(res));
  });
  await step('appUsers.update', async () => {
    const res = await app.appUsers.update(userId, { givenName: 'Ada', properties: { plan: 'pro' } });
    check(res.appUser.givenName === 'Ada' && res.appUser.properties.plan === 'pro', JSON.stringify(res));
  });
  await step('appUsers.create', async () => {
    const signedUpAt = new Date('2016-01-02T03:04:05.678Z');
    const res = await app.appUsers.create(`${userId}-pre`, { email: 'pre@example.com', signedUpAt, properties: { seats: 3 } });
    check(res.appUser.userId === `${userId}-pre` && res.appUser.email === 'pre@example.com', JSON.stringify(res));
    check(res.appUser.signedUpAt === signedUpAt.toISOString() && res.appUser.properties.seats === 3, JSON.stringify(res));
    await refused(409, () => app.appUsers.create(`${userId}-pre`));
  });
  await step('appUsers.trackEvent with attributes', async () => {
    const res = await byToken.appUsers.trackEvent(userId, 'signed-in', { surname: 'Lovelace' });
    check(res.conversationUpdated === false, JSON.stringify(res));
    const got = await app.appUsers.get(userId);
    check(got.appUser.surname === 'Lovelace' && got.appUser.givenName === 'Ada', JSON.stringify(got));
  });
  await step('appUser-scope JWT minted by the client', async () => {
    const me = asUser(userId);
    const got = await me.appUsers.get(userId);
    check(got.appUser._id === appUserId, JSON.stringify(got));
    await refused(403, () => me.appUsers.get(`${userId}-pre`));
    await refused(403, () => asUser(`${userId}-pre`).appUsers.get(userId));
  });
  await step('appUsers.updatePushToken and updateDevice', async () => {
    const res = await byToken.appUsers.updatePushToken(userId, `device-${run}`, 'push-token-1');
    check(res.device && res.device.pushNotificationToken === 'push-token-1', JSON.stringify(res));
    const dev = await byToken.appUsers.updateDevice(userId, `device-${run}`, { appVersion: '2.0', info: { carrier: 'Acme' } });
    check(dev.device.appVersion === '2.0' && dev.device.info.carrier === 'Acme', JSON.stringify(dev));
    check(dev.device.pushNotificationToken === 'push-token-1', JSON.stringify(dev));
  });
  const send = version === '1'
    ? (who, msg) => who.conversations.sendMessage(userId, msg)
    : (who, msg) => who.appUsers.sendMessage(userId, msg);
  await step('sendMessage as the user and as the app maker, with actions', async () => {
    const mine = await send(byToken, { text: 'hello', role: 'appUser' });
    check(mine.message.text === 'hello' && mine.message.role === 'appUser', JSON.stringify(mine));
    check(mine.message.type === 'text' && mine.message.authorId === appUserId, JSON.stringify(mine));
    check(mine.conversation && mine.conversation._id, JSON.stringify(mine));
    const reply = await send(app, {
      text: 'hi there', role: 'appMaker',
      actions: [
        { type: 'postback', text: 'Yes', payload: 'YES' },
        { type: 'link', text: 'Docs', uri: 'https://example.com/docs' },
      ],
    });
    const actions = reply.message.actions;
    check(actions.length === 2 && actions.every((a) => a._id), JSON.stringify(reply));
    check(actions[0].payload === 'YES' && actions[1].uri === 'https://example.com/docs', JSON.stringify(actions));
    await refused(403, () => send(byToken, { text: 'impersonating', role: 'appMaker' }));
    await refused(403, () => send(asUser(userId), { text: 'impersonating', role: 'appMaker' }));
    await refused(400, () => send(app, {
      text: 'bad', role: 'appMaker', actions: [{ type: 'link', text: 'No uri' }],
    }));
  });
  await step('conversations.get', async () => {
    const res = await byToken.conversations.get(userId);
    const texts = res.conversation.messages.map((m) => m.text);
    check(texts.join('|') === 'hello|hi there', texts.join('|'));
    check(res.conversation.unreadCount === 1, JSON.stringify(res.conversation));
  });
  await step('conversations.resetUnreadCount', async () => {
    await byToken.conversations.resetUnreadCount(userId);
    const res = await byToken.conversations.get(userId);
    check(res.conversation.unreadCount === 0, JSON.stringify(res.conversation));
  });
  const upload = version === '1'
    ? (file, msg, who = byToken) => who.conversations.uploadImage(userId, fs.createReadStream(file), msg)
    : (file, msg, who = byToken) => who.appUsers.uploadImage(userId, fs.createReadStream(file), msg);
  await step('uploadImage', async () => {
    const res = await upload(png(), { role: 'appUser' });
    check(res.message.mediaUrl && res.message.mediaType === 'image/png', JSON.stringify(res));
    check(res.message.type === 'image' && res.message.role === 'appUser', JSON.stringify(res));
    const conv = await byToken.conversations.get(userId);
    const last = conv.conversation.messages[conv.conversation.messages.length - 1];
    check(last._id === res.message._id && last.mediaUrl === res.message.mediaUrl, JSON.stringify(last));
    await refused(403, () => upload(png(), { role: 'appMaker' }));
    await refused(404, () => upload(png(), { role: 'appUser' }, other));
  });
  await step('webhooks create, list, get, update, delete', async () => {
    const created = await app.webhooks.create({ target: `https://example.com/hook-${run}` });
    const id = created.webhook._id;
    check(id && created.webhook.secret, JSON.stringify(created));
    check(created.webhook.events.join(',') === 'message', JSON.stringify(created));
    const list = await app.webhooks.list();
    check(list.webhooks.some((w) => w._id === id), JSON.stringify(list));
    const got = await app.webhooks.get(id);
    check(got.webhook.target === `https://example.com/hook-${run}`, JSON.stringify(got));
    const updated = await app.webhooks.update(id, { target: `https://example.com/moved-${run}` });
    check(updated.webhook.target === `https://example.com/moved-${run}`, JSON.stringify(updated));
    await refused(404, () => other.webhooks.get(id));
    const others = await other.webhooks.list();
    check(others.webhooks.length === 0, JSON.stringify(others));
    await refused(403, () => asUser(userId).webhooks.list());
    await app.webhooks.delete(id);
    await refused(404, () => app.webhooks.get(id));
  });
  await step('another app cannot read this user', async () => {
    await refused(404, () => other.appUsers.get(userId));
    await refused(404, () => other.conversations.get(userId));
  });
  return appUserId;
}

async function since2(userId) {
  await step('appUsers.getMessages with before and after', async () => {
    const all = await app.appUsers.getMessages(userId);
    check(all.messages.length === 3, JSON.stringify(all));
    const first = all.messages[0];
    check(!all.previous && !all.next, 'one page has no links');
    const after = await app.appUsers.getMessages(userId, { after: first.received });
    check(after.messages.length === 2 && after.messages[0].text === 'hi there', JSON.stringify(after));
    check(after.previous && !after.next, 'a page after the first links to the older one');
    const before = await app.appUsers.getMessages(userId, { before: all.messages[1].received });
    check(before.messages.length === 1 && before.messages[0].text === 'hello', JSON.stringify(before));
    check(before.next && !before.previous, 'a page before the last links to the newer one');
    await refused(404, () => other.appUsers.getMessages(userId));
  });
  await step('conversations.postPostback', async () => {
    const page = await app.appUsers.getMessages(userId);
    const message = page.messages.find((m) => m.actions && m.actions.length);
    const [postback, link] = message.actions;
    const res = await byToken.conversations.postPostback(userId, postback._id);
    const answered = res.postbacks[0];
    check(answered.action._id === postback._id && answered.action.payload === 'YES', JSON.stringify(res));
    check(answered.message._id === message._id, JSON.stringify(res));
    await refused(400, () => byToken.conversations.postPostback(userId, link._id));
    await refused(404, () => other.conversations.postPostback(userId, postback._id));
  });
  await step('menu configure, get, remove', async () => {
    const items = [
      { type: 'link', text: 'Site', uri: 'https://example.com' },
      { type: 'postback', text: 'Help', payload: 'HELP' },
    ];
    const set = await app.menu.configure({ items });
    check(set.menu.items[0].uri === 'https://example.com' && set.menu.items[1].payload === 'HELP', JSON.stringify(set));
    check(set.menu.items.every((i) => i._id), JSON.stringify(set));
    const got = await asUser(userId).menu.get();
    check(JSON.stringify(got.menu.items) === JSON.stringify(set.menu.items), JSON.stringify(got));
    await refused(403, () => asUser(userId).menu.configure({ items }));
    await refused(400, () => app.menu.configure({ items: [{ type: 'link', text: 'No uri' }] }));
    const mine = await other.menu.get();
    check(mine.menu.items.length === 0, JSON.stringify(mine));
    const removed = await app.menu.remove();
    check(removed.menu.items.length === 0, JSON.stringify(removed));
  });
}

async function since3(userId) {
  await step('appUsers.typingActivity', async () => {
    const count = (await app.appUsers.getMessages(userId)).messages.length;
    const res = await app.appUsers.typingActivity(userId, { role: 'appMaker', type: 'typing:start', data: { name: 'Ann' } });
    check(JSON.stringify(res) === '{}', JSON.stringify(res));
    await byToken.appUsers.typingActivity(userId, { role: 'appUser', type: 'typing:stop' });
    await refused(400, () => app.appUsers.typingActivity(userId, { role: 'appMaker', type: 'typing:sideways' }));
    await refused(403, () => byToken.appUsers.typingActivity(userId, { role: 'appMaker', type: 'typing:start' }));
    await refused(404, () => other.appUsers.typingActivity(userId, { role: 'appMaker', type: 'typing:start' }));
    const after = (await app.appUsers.getMessages(userId)).messages.length;
    check(after === count, `typing is not stored as a message (${count} then ${after})`);
  });
  await step('webhooks with triggers', async () => {
    const created = await app.webhooks.create({ target: `https://example.com/t-${run}`, triggers: ['message:appUser', 'postback'] });
    const hook = created.webhook;
    check(hook.triggers.join(',') === 'message:appUser,postback', JSON.stringify(created));
    check(hook.events.join(',') === hook.triggers.join(','), 'events is the earlier name of triggers');
    const updated = await app.webhooks.update(hook._id, { triggers: ['*'] });
    check(updated.webhook.triggers.join(',') === '*' && updated.webhook.target === hook.target, JSON.stringify(updated));
    const got = await app.webhooks.get(hook._id);
    check(got.webhook.triggers.join(',') === '*', JSON.stringify(got));
    await refused(400, () => app.webhooks.create({ target: `https://example.com/t-${run}`, triggers: ['message:nobody'] }));
    await app.webhooks.delete(hook._id);
  });
  await step('appUsers.deleteMessages and deleteProfile', async () => {
    await refused(404, () => other.appUsers.deleteMessages(userId));
    await app.appUsers.deleteMessages(userId);
    const page = await app.appUsers.getMessages(userId);
    check(page.messages.length === 0, JSON.stringify(page));
    const conv = await byToken.conversations.get(userId);
    check(conv.conversation.messages.length === 0, 'the conversation stays, empty');
    await refused(404, () => other.appUsers.deleteProfile(userId));
    const cleared = await asUser(userId).appUsers.deleteProfile(userId);
    check(cleared.appUser.userId === userId, JSON.stringify(cleared));
    check(!cleared.appUser.givenName && !cleared.appUser.surname && !cleared.appUser.email, JSON.stringify(cleared));
    check(Object.keys(cleared.appUser.properties || {}).length === 0, JSON.stringify(cleared));
    const got = await app.appUsers.get(userId);
    check(!got.appUser.givenName && got.appUser.devices.length === 1, JSON.stringify(got));
  });
  const account = new Smooch({ keyId: env('ACCOUNT_KEY_ID'), secret: env('ACCOUNT_SECRET'), scope: 'account' }, { serviceUrl });
  await step('account scope: apps create, list(limit, offset), get, delete', async () => {
    const a = await account.apps.create(`client-${run}-a`);
    const b = await account.apps.create(`client-${run}-b`);
    check(a.app._id && a.app.appToken && a.app.name === `client-${run}-a`, JSON.stringify(a));
    // Other tests create apps meanwhile: check the order of these two, not their places.
    const page = await account.apps.list(100);
    const ids = page.apps.map((x) => x._id);
    check(ids.indexOf(b.app._id) >= 0 && ids.indexOf(b.app._id) < ids.indexOf(a.app._id), 'newest first');
    const one = await account.apps.list(1, 1);
    check(one.apps.length === 1 && one.hasMore === true && one.offset === 1, JSON.stringify(one));
    const got = await account.apps.get(a.app._id);
    check(got.app.name === `client-${run}-a` && got.app._id === a.app._id, JSON.stringify(got));
    for (const x of [a, b]) await account.apps.delete(x.app._id);
    await refused(404, () => account.apps.get(a.app._id));
    await refused(401, () => new Smooch({ appToken: a.app.appToken }, { serviceUrl }).appUsers.get(userId));
  });
  await step('account scope: keys create, list, get, getJwt, delete', async () => {
    const key = await account.apps.keys.create(appId, `k-${run}`);
    const keyId = key.key._id;
    check(key.key.name === `k-${run}` && key.key.secret, JSON.stringify(key));
    const list = await account.apps.keys.list(appId);
    check(list.keys.some((k) => k._id === keyId) && list.keys.some((k) => k._id === env('KEY_ID')), JSON.stringify(list));
    const got = await account.apps.keys.get(appId, keyId);
    check(got.key.secret === key.key.secret, JSON.stringify(got));
    await refused(404, () => account.apps.keys.get(env('OTHER_APP_ID'), keyId));
    const minted = await account.apps.keys.getJwt(appId, keyId);
    const viaJwt = new Smooch({ jwt: minted.jwt }, { serviceUrl });
    check(viaJwt.scope === 'app', `the minted JWT has app scope, not ${viaJwt.scope}`);
    const fetched = await viaJwt.appUsers.get(userId);
    check(fetched.appUser.userId === userId, JSON.stringify(fetched));
    await account.apps.keys.delete(appId, keyId);
    await refused(401, () => viaJwt.appUsers.get(userId));
  });
  await step('account scope: integrations of every type smooch-core 3.5.0 knows', async () => {
    const secrets = {
      fcm: { serverKey: 'secret-fcm-key', senderId: '123456' },
      apn: { certificate: 'c2VjcmV0LWFwbi1jZXJ0', password: 'secret-apn-password', autoUpdateBadge: true },
      messenger: { pageAccessToken: 'secret-page-token', appId: 'fb-app', appSecret: 'secret-fb' },
      twilio: { accountSid: 'AC123', authToken: 'secret-twilio', phoneNumberSid: 'PN123' },
      telegram: { token: 'secret-telegram' },
      line: { channelAccessToken: 'secret-line-token', channelSecret: 'secret-line' },
      viber: { token: 'secret-viber' },
      wechat: { appId: 'wx-app', appSecret: 'secret-wechat', encodingAesKey: 'secret-aes' },
      frontendEmail: { fromAddress: 'help@example.com' },
    };
    const ids = {};
    for (const type of Object.keys(secrets)) {
      const created = await account.integrations.create(appId, Object.assign({ type }, secrets[type]));
      const text = JSON.stringify(created);
      check(created.integration.type === type && created.integration._id && created.integration.status, text);
      check(!text.includes('secret-'), `${type}: a secret is answered: ${text}`);
      ids[type] = created.integration._id;
    }
    const fcm = await account.integrations.get(appId, ids.fcm);
    check(fcm.integration.senderId === '123456' && !JSON.stringify(fcm).includes('secret-'), JSON.stringify(fcm));
    const all = await account.integrations.list(appId);
    check(all.integrations.length === Object.keys(secrets).length && !JSON.stringify(all).includes('secret-'), JSON.stringify(all));
    const push = await account.integrations.list(appId, ['apn', 'fcm']);
    check(push.integrations.map((i) => i.type).sort().join(',') === 'apn,fcm', JSON.stringify(push));
    await refused(409, () => account.integrations.create(appId, Object.assign({ type: 'fcm' }, secrets.fcm)));
    await refused(404, () => account.integrations.get(env('OTHER_APP_ID'), ids.fcm));
    const others = await account.integrations.list(env('OTHER_APP_ID'));
    check(others.integrations.length === 0, JSON.stringify(others));
    const init = await byToken.appUsers.init({ device: { id: `device-${run}`, platform: 'web' }, userId });
    check(init.app.gcmProject === '123456' && init.app.apnEnabled === true, JSON.stringify(init.app));
    for (const id of Object.values(ids)) await account.integrations.delete(appId, id);
    await refused(404, () => account.integrations.get(appId, ids.fcm));
    const none = await account.integrations.list(appId);
    check(none.integrations.length === 0, JSON.stringify(none));
  });
  await step('account scope: app calls under /v1/apps/{appId}', async () => {
    const user = await account.appUsers.get(appId, userId);
    check(user.appUser.userId === userId, JSON.stringify(user));
    await refused(404, () => account.appUsers.get(env('OTHER_APP_ID'), userId));
    const sent = await account.appUsers.sendMessage(appId, userId, { text: 'from the account', role: 'appMaker' });
    check(sent.message.text === 'from the account' && sent.message.role === 'appMaker', JSON.stringify(sent));
    const page = await app.appUsers.getMessages(userId);
    check(page.messages.map((m) => m.text).join('|') === 'from the account', JSON.stringify(page));
    const hook = await account.webhooks.create(appId, { target: `https://example.com/acct-${run}`, triggers: ['message'] });
    const hooks = await account.webhooks.list(appId);
    check(hooks.webhooks.map((w) => w._id).join(',') === hook.webhook._id, JSON.stringify(hooks));
    const mine = await app.webhooks.get(hook.webhook._id);
    check(mine.webhook.target === `https://example.com/acct-${run}`, JSON.stringify(mine));
    await account.webhooks.delete(appId, hook.webhook._id);
    const items = [{ type: 'postback', text: 'Talk to us', payload: 'TALK' }];
    const set = await account.menu.configure(appId, { items });
    check(set.menu.items.length === 1 && set.menu.items[0].payload === 'TALK', JSON.stringify(set));
    const menu = await app.menu.get();
    check(menu.menu.items.length === 1 && menu.menu.items[0]._id === set.menu.items[0]._id, JSON.stringify(menu));
    const otherMenu = await account.menu.get(env('OTHER_APP_ID'));
    check(otherMenu.menu.items.length === 0, JSON.stringify(otherMenu));
    const removed = await account.menu.remove(appId);
    check(removed.menu.items.length === 0, JSON.stringify(removed));
    check((await account.menu.get(appId)).menu.items.length === 0, 'the menu is removed');
  });
}

(async () => {
  const userId = `core${version}-${run}@example.com`;
  await common(userId);
  if (version !== '1') await since2(userId);
  if (version === '3') await since3(userId);
  console.log('DONE');
})();
