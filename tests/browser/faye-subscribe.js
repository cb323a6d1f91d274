// Subscribes to one channel of the gateway's /faye with the faye 1.1 client, as the Web
// Messenger does, and prints what happens, one line each:
//   SUBSCRIBED                 the subscription succeeded
//   TRANSPORT <type>           the connection type the client chose
//   REFUSED <error>            the server refused it (exit 3)
//   MESSAGE <json>             a message on the channel
//   DONE <count>               FAYE_EXPECT messages arrived, then FAYE_GRACE_MS passed (exit 0)
// Exit 2 when FAYE_TIMEOUT_MS passes first.
// Settings (environment): FAYE_URL, FAYE_CHANNEL, FAYE_EXT (JSON), FAYE_EXPECT,
// FAYE_GRACE_MS, FAYE_TIMEOUT_MS, FAYE_DISABLE (a transport not to use: websocket).
'use strict';
const faye = require('faye');

const url = process.env.FAYE_URL;
const channel = process.env.FAYE_CHANNEL;
const ext = JSON.parse(process.env.FAYE_EXT || '{}');
const expect = Number(process.env.FAYE_EXPECT || '1');
const grace = Number(process.env.FAYE_GRACE_MS || '500');
const timeout = Number(process.env.FAYE_TIMEOUT_MS || '20000');

const client = new faye.Client(url, { timeout: 10 });
client.addExtension({
  outgoing(message, callback) {
    if (message.channel === '/meta/subscribe') message.ext = ext;
    callback(message);
  },
});

if (process.env.FAYE_DISABLE) client.disable(process.env.FAYE_DISABLE);

let count = 0;
const timer = setTimeout(() => {
  console.log(`TIMEOUT after ${count} messages`);
  process.exit(2);
}, timeout);

const subscription = client.subscribe(channel, (data) => {
  count += 1;
  console.log(`MESSAGE ${JSON.stringify(data)}`);
  if (count === expect) {
    setTimeout(() => {
      clearTimeout(timer);
      console.log(`DONE ${count}`);
      client.disconnect();
      setTimeout(() => process.exit(0), 100);
    }, grace);
  }
});
subscription.then(
  () => {
    console.log('SUBSCRIBED');
    console.log(`TRANSPORT ${client._dispatcher.connectionType}`);
  },
  (error) => {
    console.log(`REFUSED ${error && error.code} ${error && error.message}`);
    process.exit(3);
  },
);
