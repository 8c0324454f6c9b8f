// Realtime black-box driver: real Socket.IO v4 (`socket.io-client`) and
// graphql-ws clients, controlled by JSON lines on stdin, reporting every
// received message as a JSON line on stdout.
//
//   {"op":"sio","name":"a","url":"http://127.0.0.1:1234","path":"/ws/socket.io",
//    "token":"<jwt>"|null,"cookie":"access_token=..."|null,"transports":["websocket"]}
//   {"op":"emit","name":"a","event":"join","data":{"projectId":"..."},"ack":true}
//     (with "ack", waits for the server's acknowledgement and reports it)
//   {"op":"close","name":"a"}
//   {"op":"drop","name":"a"}   (closes the transport under the socket, as a
//     lost network does: socket.io-client reconnects and tries to recover)
//   {"op":"gql","name":"g","url":"ws://127.0.0.1:1234/api/graphql","token":"<jwt>",
//    "query":"subscription { ... }","variables":{}}
//
// Output lines: {"name","kind":"connected"|"connect_error"|"event"|"notification"|
// "disconnect"|"gql_next"|"gql_error"|"gql_complete"|"ack", ...}

import { createRequire } from "node:module";
import readline from "node:readline";
import path from "node:path";

const dir = process.env.RT_CLIENTS_DIR;
const require = createRequire(path.join(dir, "node_modules", "x.js"));
const { io } = require("socket.io-client");
const { createClient } = require("graphql-ws");
const WebSocket = require("ws");

const clients = new Map();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function sio(cmd) {
  const opts = {
    path: cmd.path || "/ws/socket.io",
    transports: cmd.transports || ["websocket"],
    reconnection: cmd.reconnection ?? true,
    forceNew: true,
    timeout: 10000,
  };
  if (cmd.token) opts.auth = { token: cmd.token };
  const headers = {};
  if (cmd.cookie) headers.Cookie = cmd.cookie;
  if (cmd.origin) headers.Origin = cmd.origin;
  if (Object.keys(headers).length) opts.extraHeaders = headers;
  const socket = io(cmd.url, opts);
  clients.set(cmd.name, socket);
  socket.on("connect", () =>
    out({ name: cmd.name, kind: "connected", id: socket.id, recovered: socket.recovered === true }));
  socket.on("connect_error", (e) => out({ name: cmd.name, kind: "connect_error", message: String(e && e.message) }));
  socket.on("disconnect", (reason) => out({ name: cmd.name, kind: "disconnect", reason }));
  // "joinOnConnect": emit `join` from the connect handler itself, as Paca's
  // web app does (the server must already listen for it).
  if (cmd.joinOnConnect)
    socket.on("connect", () =>
      socket
        .timeout(10000)
        .emitWithAck("join", cmd.joinOnConnect)
        .then((data) => out({ name: cmd.name, kind: "joined", data }))
        .catch((e) => out({ name: cmd.name, kind: "joined", error: String(e && e.message) })));
  // The second argument is the message's offset (connection-state recovery).
  socket.on("event", (data, offset) => out({ name: cmd.name, kind: "event", data, offset, t: Date.now() }));
  socket.on("notification", (data, offset) =>
    out({ name: cmd.name, kind: "notification", data, offset, t: Date.now() }));
}

function gql(cmd) {
  const client = createClient({
    url: cmd.url,
    webSocketImpl: WebSocket,
    connectionParams: cmd.token ? { token: cmd.token } : {},
    retryAttempts: 0,
    lazy: false,
  });
  clients.set(cmd.name, client);
  client.subscribe(
    { query: cmd.query, variables: cmd.variables || {} },
    {
      next: (data) => out({ name: cmd.name, kind: "gql_next", data }),
      error: (e) =>
        out({
          name: cmd.name,
          kind: "gql_error",
          error: Array.isArray(e) ? e : String((e && (e.reason || e.message)) || e),
        }),
      complete: () => out({ name: cmd.name, kind: "gql_complete" }),
    },
  );
  client.on("connected", () => out({ name: cmd.name, kind: "gql_connected" }));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ kind: "driver_error", message: "bad json: " + line });
    return;
  }
  try {
    if (cmd.op === "sio") sio(cmd);
    else if (cmd.op === "gql") gql(cmd);
    else if (cmd.op === "emit" && cmd.ack) {
      clients
        .get(cmd.name)
        .timeout(10000)
        .emitWithAck(cmd.event, cmd.data)
        .then((data) => out({ name: cmd.name, kind: "ack", op: "emit", data }))
        .catch((e) => out({ name: cmd.name, kind: "ack", op: "emit", error: String(e && e.message) }));
    } else if (cmd.op === "emit") {
      clients.get(cmd.name).emit(cmd.event, cmd.data);
      out({ name: cmd.name, kind: "ack", op: "emit" });
    } else if (cmd.op === "close") {
      const c = clients.get(cmd.name);
      if (c && c.disconnect) c.disconnect();
      else if (c && c.dispose) c.dispose();
      clients.delete(cmd.name);
      out({ name: cmd.name, kind: "ack", op: "close" });
    } else if (cmd.op === "drop") {
      clients.get(cmd.name).io.engine.close();
      out({ name: cmd.name, kind: "ack", op: "drop" });
    } else if (cmd.op === "ping") out({ kind: "pong" });
  } catch (e) {
    out({ name: cmd.name, kind: "driver_error", message: String(e && e.stack) });
  }
});
rl.on("close", () => process.exit(0));
