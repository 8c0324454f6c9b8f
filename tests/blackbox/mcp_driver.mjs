// A real MCP client (the official TypeScript SDK) driven line by line from
// the pytest suite: one JSON request per stdin line, one JSON reply per
// stdout line.
//
//   first line:  {"transport":"stdio","command":"...","args":[...],"env":{...}}
//            or  {"transport":"http","url":"http://.../api/mcp","headers":{...}}
//   then:        {"op":"list"} | {"op":"call","name":"...","arguments":{...}} | {"op":"close"}
//
// MCP_SDK_DIR names the directory where `npm install @modelcontextprotocol/sdk`
// ran (scripts/test.sh installs it under target/).
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const sdkDir = process.env.MCP_SDK_DIR;
if (!sdkDir) {
	console.error("MCP_SDK_DIR is not set");
	process.exit(2);
}
const require = createRequire(path.join(path.resolve(sdkDir), "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const {
	StreamableHTTPClientTransport,
} = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

let client = null;

function reply(obj) {
	process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function connect(cfg) {
	let transport;
	if (cfg.transport === "stdio") {
		transport = new StdioClientTransport({
			command: cfg.command,
			args: cfg.args ?? [],
			env: cfg.env ?? {},
			stderr: "inherit",
		});
	} else {
		transport = new StreamableHTTPClientTransport(new URL(cfg.url), {
			requestInit: { headers: cfg.headers ?? {} },
		});
	}
	client = new Client({ name: "paca-blackbox", version: "1.0.0" });
	await client.connect(transport);
	return { serverInfo: client.getServerVersion() ?? null };
}

async function handle(msg) {
	if (!client) return { ok: true, ...(await connect(msg)) };
	switch (msg.op) {
		case "list": {
			const tools = [];
			let cursor;
			do {
				const page = await client.listTools(cursor ? { cursor } : {});
				tools.push(...page.tools);
				cursor = page.nextCursor;
			} while (cursor);
			return { ok: true, tools };
		}
		case "call": {
			const result = await client.callTool({
				name: msg.name,
				arguments: msg.arguments ?? {},
			});
			return { ok: true, result };
		}
		case "close":
			await client.close();
			return { ok: true, closed: true };
		default:
			return { ok: false, error: `unknown op ${msg.op}` };
	}
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
	queue = queue.then(async () => {
		let msg;
		try {
			msg = JSON.parse(line);
		} catch (e) {
			reply({ ok: false, error: `bad JSON: ${e}` });
			return;
		}
		try {
			const out = await handle(msg);
			reply(out);
			if (msg.op === "close") process.exit(0);
		} catch (e) {
			reply({ ok: false, error: String(e?.message ?? e), code: e?.code ?? null });
		}
	});
});
rl.on("close", async () => {
	await queue;
	if (client) await client.close().catch(() => {});
	process.exit(0);
});
