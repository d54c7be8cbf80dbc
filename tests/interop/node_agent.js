// Drives Microsoft's unmodified Azure IoT Node.js device SDK for the interop tests: the Node counterpart of
// azure_agent.py. The packages (tests/interop/node/package-lock.json) are installed outside the repo by
// tests/interop/node_support.py, which starts this script with NODE_PATH pointing at them.
//
// Protocol: one JSON request per line on stdin, {"id": N, "op": NAME, "args": {...}}; one JSON answer per
// line on stdout, {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": CLASS, "message": ...}.
// Events happen between answers as {"event": KIND, "client": NAME, "time": SECONDS, ...} lines: connected,
// disconnected, error, method (each method request the SDK hands to a handler), responded / response_error
// (the SDK's callback of response.send). The first line is {"ready": true}.
//
// Only the SDK's public API is used, as an application written for Azure IoT Hub would:
// Client / ModuleClient.fromConnectionString(cs, Transport), setOptions({ca}), open, onDeviceMethod / onMethod,
// getTwin / twin.properties.reported.update, close. Method handlers (the method name picks one):
//   echo   answers 200 with the request payload;
//   status answers payload.status with payload.payload (null when absent);
//   slow   waits payload.seconds, then answers 200 with the request payload;
//   throw  throws payload.message (the SDK itself then answers 400 "Invalid request format: ...").
//
// Ports: the SDK dials HostName's port when it has one (mqtts://HOST, amqps://HOST), so the tests hand it
// `HostName=localhost:PORT` for the TLS transports. Its WebSocket transports dial wss://HOST:443 with 443
// hard-coded; for those the tests pass ws_proxy_port and this script sets the SDK's documented
// `webSocketAgent` option (mqtt.webSocketAgent / amqp.webSocketAgent, the hook Microsoft's samples use for an
// HTTP proxy) to an https.Agent that tunnels through the tests' CONNECT proxy (support.py: ConnectProxy),
// which sends :443 to the hub's HTTPS port. TLS stays end to end between the SDK and the hub.
'use strict';

const http = require('http');
const https = require('https');
const readline = require('readline');
const tls = require('tls');

const TRANSPORTS = {
  mqtt: () => require('azure-iot-device-mqtt').Mqtt,
  mqttws: () => require('azure-iot-device-mqtt').MqttWs,
  amqp: () => require('azure-iot-device-amqp').Amqp,
  amqpws: () => require('azure-iot-device-amqp').AmqpWs,
};
const WEBSOCKET_OPTION = { mqttws: 'mqtt', amqpws: 'amqp' };
const METHODS = ['echo', 'status', 'slow', 'throw'];

const clients = new Map();

function write(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function report(client, kind, fields) {
  write({ event: kind, client, time: Date.now() / 1000, ...fields });
}

function describe(err) {
  if (!err) return null;
  return { error: err.constructor ? err.constructor.name : 'Error', message: String(err.message || err) };
}

/** An https.Agent whose sockets are tunnels through an HTTP CONNECT proxy on 127.0.0.1:proxyPort. */
class ConnectProxyAgent extends https.Agent {
  constructor(proxyPort, ca) {
    super({ ca, keepAlive: false });
    this.proxyPort = proxyPort;
  }

  createConnection(options, callback) {
    const target = `${options.host}:${options.port}`;
    const request = http.request({
      host: '127.0.0.1',
      port: this.proxyPort,
      method: 'CONNECT',
      path: target,
      headers: { Host: target },
    });
    request.once('connect', (response, socket) => {
      if (response.statusCode !== 200) {
        socket.destroy();
        callback(new Error(`the proxy refused CONNECT ${target}: HTTP ${response.statusCode}`));
        return;
      }
      const servername = options.servername || options.host;
      // cert/key: what the SDK gives its WebSocket for an X.509 client (setOptions({cert, key})), if anything
      callback(null, tls.connect({ socket, servername, ca: options.ca, cert: options.cert, key: options.key, ALPNProtocols: options.ALPNProtocols }));
    });
    request.once('error', callback);
    request.end();
  }
}

function methodHandler(name, method) {
  return (request, response) => {
    const payload = request.payload === undefined ? null : request.payload;
    report(name, 'method', {
      method: request.methodName,
      payload,
      has_payload: request.payload !== undefined,
      request_id: request.requestId,
    });
    const reply = (status, body) => {
      response.send(status, body, (err) => {
        if (err) report(name, 'response_error', { method, ...describe(err) });
        else report(name, 'responded', { method, status });
      });
    };
    switch (method) {
      case 'echo':
        reply(200, payload);
        break;
      case 'status':
        reply(payload.status, payload.payload === undefined ? null : payload.payload);
        break;
      case 'slow':
        setTimeout(() => reply(200, payload), 1000 * payload.seconds);
        break;
      case 'throw':
        throw new Error((payload && payload.message) || 'the handler failed');
      default:
        throw new Error(`no handler named ${method}`);
    }
  };
}

const OPERATIONS = {
  /** Create a client named `client`, trust `ca` (and present `cert`/`key`, PEM, for an X.509 identity), open it,
   * register the method handlers. `retry: false`:
   * the SDK's NoRetry policy instead of its default (which reconnects at once whenever the hub closes
   * the connection, so a client whose connection was taken over would take it back). */
  async open({ client: name, cs, transport, ca, module = false, ws_proxy_port = null, retry = true, methods = METHODS, cert = null, key = null }) {
    if (clients.has(name)) throw new Error(`a client named ${name} is open already`);
    if (!(transport in TRANSPORTS)) throw new Error(`unknown transport ${transport}`);
    const { Client, ModuleClient } = require('azure-iot-device');
    const Transport = TRANSPORTS[transport]();
    const client = (module ? ModuleClient : Client).fromConnectionString(cs, Transport);
    clients.set(name, client);
    if (!retry) client.setRetryPolicy(new (require('azure-iot-common').NoRetry)());
    client.on('connect', () => report(name, 'connected', {}));
    client.on('disconnect', (result) => report(name, 'disconnected', describe(result && result.reason) || {}));
    client.on('error', (err) => report(name, 'error', describe(err)));
    const options = { ca };
    if (cert !== null) Object.assign(options, { cert, key }); // X.509: a `x509=true` connection string
    if (transport in WEBSOCKET_OPTION) {
      if (ws_proxy_port === null) throw new Error(`transport ${transport} dials port 443: give ws_proxy_port`);
      options[WEBSOCKET_OPTION[transport]] = { webSocketAgent: new ConnectProxyAgent(ws_proxy_port, ca) };
    }
    try {
      await client.setOptions(options);
      await client.open();
    } catch (err) {
      clients.delete(name);
      client.close().catch(() => {});
      throw err;
    }
    for (const method of methods) {
      if (module) client.onMethod(method, methodHandler(name, method));
      else client.onDeviceMethod(method, methodHandler(name, method));
    }
    return { transport, module };
  },

  /** The client's twin (`getTwin`): its desired and reported properties as JSON. */
  async get_twin({ client: name }) {
    const client = clients.get(name);
    if (!client) throw new Error(`no client named ${name}`);
    const twin = await client.getTwin();
    return JSON.parse(JSON.stringify({ desired: twin.properties.desired, reported: twin.properties.reported }));
  },

  /** Listen to desired-property changes (`twin.on('properties.desired')`): each is reported as a
   * `desired` event with the delta the SDK hands over. */
  async watch_desired({ client: name }) {
    const client = clients.get(name);
    if (!client) throw new Error(`no client named ${name}`);
    const twin = await client.getTwin();
    twin.on('properties.desired', (delta) => report(name, 'desired', { delta: JSON.parse(JSON.stringify(delta)) }));
    return null;
  },

  /** Send a reported-properties patch (`twin.properties.reported.update`). */
  async update_reported({ client: name, patch }) {
    const client = clients.get(name);
    if (!client) throw new Error(`no client named ${name}`);
    const twin = await client.getTwin();
    await new Promise((resolve, reject) =>
      twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve())),
    );
    return null;
  },

  /** Close the client (the SDK's clean disconnect). */
  async close({ client: name }) {
    const client = clients.get(name);
    if (!client) throw new Error(`no client named ${name}`);
    clients.delete(name);
    await client.close();
    return null;
  },
};

async function serve(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    write({ id: null, ok: false, error: 'BadRequest', message: `not JSON: ${err.message}` });
    return;
  }
  const { id, op, args } = request;
  try {
    if (!(op in OPERATIONS)) throw new Error(`unknown op ${op}`);
    const result = await OPERATIONS[op](args || {});
    write({ id, ok: true, result: result === undefined ? null : result });
  } catch (err) {
    write({ id, ok: false, ...describe(err), stack: err && err.stack ? String(err.stack) : null });
  }
}

// A failure the SDK does not hand to a callback is reported, not fatal: the other clients keep running.
process.on('uncaughtException', (err) => report(null, 'uncaught', describe(err)));
process.on('unhandledRejection', (err) => report(null, 'uncaught', describe(err)));

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.trim()) serve(line);
});
input.on('close', async () => {
  // stdin closed: the test is done with this agent. Close every client (bounded), then exit.
  const closing = [...clients.values()].map((client) => client.close().catch(() => {}));
  await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, 5000))]);
  process.exit(0);
});
write({ ready: true });
