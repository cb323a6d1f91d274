// Bundles the era's Web Messenger (npm `smooch` 3.9.3, which ships CommonJS under lib/ only)
// into one browser script, build/smooch.js, that sets `window.Smooch` as the hosted
// <script> tag did. Run by scripts/browser-up.sh after `npm ci`; the bundle is not committed.
// Usage: node bundle-webmessenger.js [out-file]
'use strict';
const path = require('path');
const esbuild = require('esbuild');

const out = process.argv[2] || path.join(__dirname, 'build', 'smooch.js');

esbuild
  .build({
    entryPoints: [require.resolve('smooch/lib/umd.js')],
    bundle: true,
    platform: 'browser',
    // umd.js assigns `module.exports` under a bundler; the IIFE's global name is what a
    // page calls, exactly as with the hosted script.
    format: 'iife',
    globalName: 'Smooch',
    target: 'es2017',
    outfile: out,
    define: {
      global: 'window',
      'process.env.NODE_ENV': '"production"',
    },
    // node's `url` and `path` come from their browser packages (`url`, `path-browserify`).
    alias: {
      url: require.resolve('url/'),
      path: require.resolve('path-browserify'),
    },
    logLevel: 'warning',
  })
  .then(() => console.log(`bundled ${out}`))
  .catch(() => process.exit(1));
