"""Helpers for the MCP black-box tests: a real MCP client (the official
TypeScript SDK, run by Node through `mcp_driver.mjs`) talking to `paca mcp`
over stdio or to the server's `/api/mcp` over streamable HTTP.

The SDK is installed by scripts/test.sh into target/mcp-sdk (MCP_SDK_DIR
overrides); `ensure_sdk()` installs it there too when pytest runs alone.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "mcp_driver.mjs"
SDK_VERSION = "1.32.2"
SDK_DIR = Path(os.environ.get("MCP_SDK_DIR") or ROOT / "target" / "mcp-sdk")
CALL_TIMEOUT = 60


def ensure_sdk() -> Path:
    marker = SDK_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if marker.exists():
        return SDK_DIR
    SDK_DIR.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["npm", "install", "--prefix", str(SDK_DIR), "--no-audit", "--no-fund", "--silent",
         f"@modelcontextprotocol/sdk@{SDK_VERSION}"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0 and marker.exists(), f"npm install of the MCP SDK failed:\n{res.stderr}"
    return SDK_DIR


class McpError(AssertionError):
    """A protocol-level failure reported by the client (not an isError result)."""


class Result:
    def __init__(self, raw: dict):
        self.raw = raw
        self.is_error = bool(raw.get("isError"))
        self.text = "\n".join(c.get("text", "") for c in raw.get("content", []) if c.get("type") == "text")

    def __repr__(self) -> str:
        return f"Result(is_error={self.is_error}, text={self.text[:300]!r})"


class McpSession:
    """One MCP client session. Use as a context manager."""

    def __init__(self, config: dict):
        ensure_sdk()
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="mcp-driver-", suffix=".log", delete=False)
        env = dict(os.environ, MCP_SDK_DIR=str(SDK_DIR))
        self.proc = subprocess.Popen(
            ["node", str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr_file, env=env, text=True, bufsize=1,
        )
        self.connect_reply = self._send(config)
        if not self.connect_reply.get("ok"):
            err = self.connect_reply.get("error")
            self.close()
            raise McpError(f"MCP connect failed: {err}\n--- driver/server stderr ---\n{self.stderr_tail()}")

    def stderr_tail(self, n: int = 60) -> str:
        try:
            with open(self.stderr_file.name, encoding="utf-8", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def _send(self, msg: dict, timeout: float = CALL_TIMEOUT) -> dict:
        assert self.proc.poll() is None, f"MCP driver exited\n{self.stderr_tail()}"
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"no MCP reply within {timeout}s to {msg}\n{self.stderr_tail()}"
        line = self.proc.stdout.readline()
        assert line, f"MCP driver closed its output\n{self.stderr_tail()}"
        return json.loads(line)

    def list_tools(self) -> list[dict]:
        r = self._send({"op": "list"})
        if not r.get("ok"):
            raise McpError(f"tools/list failed: {r.get('error')}\n{self.stderr_tail()}")
        return r["tools"]

    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.list_tools()]

    def call_raw(self, name: str, arguments: dict | None = None) -> dict:
        return self._send({"op": "call", "name": name, "arguments": arguments or {}})

    def call(self, name: str, arguments: dict | None = None) -> Result:
        r = self.call_raw(name, arguments)
        if not r.get("ok"):
            raise McpError(f"tools/call {name} failed at the protocol level: {r.get('error')}\n{self.stderr_tail()}")
        return Result(r["result"])

    def ok(self, name: str, arguments: dict | None = None) -> str:
        res = self.call(name, arguments)
        assert not res.is_error, f"{name}({arguments}) returned isError: {res.text}"
        return res.text

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.stderr_file.close()
        try:
            os.unlink(self.stderr_file.name)
        except OSError:
            pass

    def __enter__(self) -> "McpSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stdio_config(paca_bin: str, env: dict) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PACA_")}
    base.update(RUST_LOG="info", NO_COLOR="1")
    base.update(env)
    return {"transport": "stdio", "command": paca_bin, "args": ["mcp"], "env": base}


def http_config(base_url: str, headers: dict, query: str = "") -> dict:
    return {"transport": "http", "url": f"{base_url}/api/mcp{query}", "headers": headers}
