// zhost/lib/index.js — the package entry point: the client API and the protocol codec.
'use strict';
const client = require('./client');
const protocol = require('./protocol');
module.exports = Object.assign({}, client, { protocol });
