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
    const res = await app.appUsers.create(`${userId}-pre`, { email: 'pre@example.com' });
    check(res.appUser.userId === `${userId}-pre` && res.appUser.email === 'pre@example.com', JSON.stringify(res));
  });
  await step('appUsers.trackEvent', async () => {
    const res = await byToken.appUsers.trackEvent(userId, 'signed-in');
    check(typeof res.conversationUpdated === 'boolean', JSON.stringify(res));
  });
  await step('appUsers.updatePushToken and updateDevice', async () => {
    const res = await byToken.appUsers.updatePushToken(userId, `device-${run}`, 'push-token-1');
    check(res.device && res.device.pushNotificationToken === 'push-token-1', JSON.stringify(res));
    const dev = await byToken.appUsers.updateDevice(userId, `device-${run}`, { appVersion: '2.0' });
    check(dev.device.appVersion === '2.0', JSON.stringify(dev));
  });
  const send = version === '1'
    ? (who, msg) => who.conversations.sendMessage(userId, msg)
    : (who, msg) => who.appUsers.sendMessage(userId, msg);
  await step('sendMessage as the user and as the app maker, with actions', async () => {
    const mine = await send(byToken, { text: 'hello', role: 'appUser' });
    check(mine.message.text === 'hello' && mine.message.role === 'appUser', JSON.stringify(mine));
    const reply = await send(app, {
      text: 'hi there', role: 'appMaker',
      actions: [{ type: 'postback', text: 'Yes', payload: 'YES' }],
    });
    check(reply.message.actions[0]._id, JSON.stringify(reply));
    await refused(403, () => send(byToken, { text: 'impersonating', role: 'appMaker' }));
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
    ? (file, msg) => byToken.conversations.uploadImage(userId, fs.createReadStream(file), msg)
    : (file, msg) => byToken.appUsers.uploadImage(userId, fs.createReadStream(file), msg);
  await step('uploadImage', async () => {
    const res = await upload(png(), { role: 'appUser' });
    check(res.message.mediaUrl && res.message.mediaType === 'image/png', JSON.stringify(res));
  });
  await step('webhooks create, list, get, update, delete', async () => {
    const created = await app.webhooks.create({ target: `https://example.com/hook-${run}` });
    const id = created.webhook._id;
    check(id && created.webhook.secret, JSON.stringify(created));
    const list = await app.webhooks.list();
    check(list.webhooks.some((w) => w._id === id), JSON.stringify(list));
    const got = await app.webhooks.get(id);
    check(got.webhook.target === `https://example.com/hook-${run}`, JSON.stringify(got));
    const updated = await app.webhooks.update(id, { target: `https://example.com/moved-${run}` });
    check(updated.webhook.target === `https://example.com/moved-${run}`, JSON.stringify(updated));
    await refused(404, () => other.webhooks.get(id));
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
    const after = await app.appUsers.getMessages(userId, { after: first.received });
    check(after.messages.length === 2 && after.messages[0].text === 'hi there', JSON.stringify(after));
    const before = await app.appUsers.getMessages(userId, { before: all.messages[1].received });
    check(before.messages.length === 1 && before.messages[0].text === 'hello', JSON.stringify(before));
  });
  await step('conversations.postPostback', async () => {
    const page = await app.appUsers.getMessages(userId);
    const action = page.messages.find((m) => m.actions && m.actions.length).actions[0];
    const res = await byToken.conversations.postPostback(userId, action._id);
    check(res, 'answered');
  });
  await step('menu configure, get, remove', async () => {
    const items = [{ type: 'link', text: 'Site', uri: 'https://example.com' }];
    const set = await app.menu.configure({ items });
    check(set.menu.items[0].uri === 'https://example.com', JSON.stringify(set));
    const got = await app.menu.get();
    check(got.menu.items.length === 1, JSON.stringify(got));
    const mine = await other.menu.get();
    check(mine.menu.items.length === 0, JSON.stringify(mine));
    const removed = await app.menu.remove();
    check(removed.menu.items.length === 0, JSON.stringify(removed));
  });
}

async function since3(userId) {
  await step('appUsers.typingActivity', async () => {
    await app.appUsers.typingActivity(userId, { role: 'appMaker', type: 'typing:start' });
  });
  await step('webhooks with triggers', async () => {
    const created = await app.webhooks.create({ target: `https://example.com/t-${run}`, triggers: ['message:appUser', 'postback'] });
    check(created.webhook.triggers.join(',') === 'message:appUser,postback', JSON.stringify(created));
    await app.webhooks.delete(created.webhook._id);
  });
  await step('appUsers.deleteMessages and deleteProfile', async () => {
    await app.appUsers.deleteMessages(userId);
    const page = await app.appUsers.getMessages(userId);
    check(page.messages.length === 0, JSON.stringify(page));
    const cleared = await app.appUsers.deleteProfile(userId);
    check(!cleared.appUser.givenName && cleared.appUser.userId === userId, JSON.stringify(cleared));
  });
  const account = new Smooch({ keyId: env('ACCOUNT_KEY_ID'), secret: env('ACCOUNT_SECRET'), scope: 'account' }, { serviceUrl });
  await step('account scope: apps create, list, get', async () => {
    const created = await account.apps.create(`client-${run}`);
    check(created.app._id && created.app.appToken, JSON.stringify(created));
    const page = await account.apps.list(1, 0);
    check(page.apps.length === 1 && page.hasMore === true, JSON.stringify(page));
    const got = await account.apps.get(created.app._id);
    check(got.app.name === `client-${run}`, JSON.stringify(got));
    await account.apps.delete(created.app._id);
    await refused(404, () => account.apps.get(created.app._id));
  });
  await step('account scope: keys create, list, get, getJwt, delete', async () => {
    const key = await account.apps.keys.create(appId, `k-${run}`);
    const keyId = key.key._id;
    const list = await account.apps.keys.list(appId);
    check(list.keys.some((k) => k._id === keyId), JSON.stringify(list));
    const got = await account.apps.keys.get(appId, keyId);
    check(got.key.secret === key.key.secret, JSON.stringify(got));
    const minted = await account.apps.keys.getJwt(appId, keyId);
    const viaJwt = new Smooch({ jwt: minted.jwt }, { serviceUrl });
    const fetched = await viaJwt.appUsers.get(userId);
    check(fetched.appUser.userId === userId, JSON.stringify(fetched));
    await account.apps.keys.delete(appId, keyId);
    await refused(401, () => viaJwt.appUsers.get(userId));
  });
  await step('account scope: integrations create, list, get, delete (3.x asks account scope)', async () => {
    const created = await account.integrations.create(appId, { type: 'fcm', serverKey: 'test-server-key', senderId: '123456' });
    const id = created.integration._id;
    check(created.integration.senderId === '123456', JSON.stringify(created));
    check(!JSON.stringify(created).includes('test-server-key'), 'the server key is never answered');
    const listed = await account.integrations.list(appId, ['fcm']);
    check(listed.integrations.length === 1 && listed.integrations[0]._id === id, JSON.stringify(listed));
    const got = await account.integrations.get(appId, id);
    check(got.integration.type === 'fcm', JSON.stringify(got));
    await refused(404, () => account.integrations.get(env('OTHER_APP_ID'), id));
    await account.integrations.delete(appId, id);
    await refused(404, () => account.integrations.get(appId, id));
  });
  await step('account scope: app calls under /v1/apps/{appId}', async () => {
    const user = await account.appUsers.get(appId, userId);
    check(user.appUser.userId === userId, JSON.stringify(user));
    const sent = await account.appUsers.sendMessage(appId, userId, { text: 'from the account', role: 'appMaker' });
    check(sent.message.text === 'from the account', JSON.stringify(sent));
    const hooks = await account.webhooks.list(appId);
    check(Array.isArray(hooks.webhooks), JSON.stringify(hooks));
    const menu = await account.menu.get(appId);
    check(Array.isArray(menu.menu.items), JSON.stringify(menu));
    const integrations = await account.integrations.list(appId);
    check(Array.isArray(integrations.integrations), JSON.stringify(integrations));
  });
}

(async () => {
  const userId = `core${version}-${run}@example.com`;
  await common(userId);
  if (version !== '1') await since2(userId);
  if (version === '3') await since3(userId);
  console.log('DONE');
})();
