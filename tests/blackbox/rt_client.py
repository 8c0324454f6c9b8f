"""Realtime black-box helpers: real Node clients (`socket.io-client` v4 and
`graphql-ws`) driven through `rt_driver.mjs` (JSON lines on stdin/stdout).

The Node packages are installed by scripts/test.sh into target/rt-clients
(RT_CLIENTS_DIR overrides); `ensure_clients()` installs them when pytest
runs alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "rt_driver.mjs"
CLIENTS_DIR = Path(os.environ.get("RT_CLIENTS_DIR") or ROOT / "target" / "rt-clients")
PACKAGES = ["socket.io-client@4.8.4", "graphql-ws@6.4.2", "ws@8.23.1", "graphql@16.15.0"]


def ensure_clients() -> Path:
    marker = CLIENTS_DIR / "node_modules" / "graphql" / "package.json"
    if all((CLIENTS_DIR / "node_modules" / p.rsplit("@", 1)[0] / "package.json").exists() for p in PACKAGES) \
            and marker.exists():
        return CLIENTS_DIR
    CLIENTS_DIR.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["npm", "install", "--prefix", str(CLIENTS_DIR), "--no-audit", "--no-fund", "--silent", *PACKAGES],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, f"npm install of the realtime clients failed:\n{res.stderr}"
    return CLIENTS_DIR


class Driver:
    """One Node process hosting any number of named clients."""

    def __init__(self):
        ensure_clients()
        env = dict(os.environ, RT_CLIENTS_DIR=str(CLIENTS_DIR))
        self.proc = subprocess.Popen(
            ["node", str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, bufsize=1,
        )
        self.lines: list[dict] = []
        self.lock = threading.Condition()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"kind": "raw", "line": line}
            with self.lock:
                self.lines.append(msg)
                self.lock.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout: float = 10.0, what: str = "message"):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for m in self.lines:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what}; received: {json.dumps(self.lines[-30:])[:3000]}"
                        f"\nstderr: {''.join(self.stderr)[-2000:]}"
                    )
                self.lock.wait(left)

    def received(self, name: str, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [m for m in self.lines if m.get("name") == name and (kind is None or m.get("kind") == kind)]

    # -- Socket.IO ---------------------------------------------------------
    def sio(self, name: str, base: str, token: str | None = None, cookie: str | None = None,
            path: str = "/ws/socket.io", transports=("websocket",), expect: str = "connected"):
        self.send(op="sio", name=name, url=base, path=path, token=token, cookie=cookie,
                  transports=list(transports))
        return self.wait_for(lambda m: m.get("name") == name and m.get("kind") in ("connected", "connect_error"),
                             what=f"{name} to connect")

    def emit(self, name: str, event: str, data, ack: bool = True):
        """Emits; with `ack`, returns the server's acknowledgement (for
        `join`: the rooms granted, the socket being in them already)."""
        self.send(op="emit", name=name, event=event, data=data, ack=ack)
        m = self.wait_for(lambda m: m.get("name") == name and m.get("kind") == "ack", what="emit ack")
        with self.lock:
            self.lines = [m for m in self.lines if not (m.get("name") == name and m.get("kind") == "ack")]
        assert "error" not in m, m
        return m.get("data")

    def events(self, name: str, kind: str = "event", type_: str | None = None) -> list[dict]:
        return [m["data"] for m in self.received(name, kind) if type_ is None or m["data"].get("type") == type_]

    def wait_event(self, name: str, type_: str, pred=lambda p: True, kind: str = "event", timeout: float = 10.0):
        return self.wait_for(
            lambda m: m.get("name") == name and m.get("kind") == kind and m["data"].get("type") == type_
            and pred(m["data"]["payload"]),
            timeout=timeout, what=f"{name}: {kind} {type_}",
        )["data"]

    # -- graphql-ws ----------------------------------------------------------
    def gql(self, name: str, url: str, token: str | None, query: str, variables: dict | None = None):
        self.send(op="gql", name=name, url=url, token=token, query=query, variables=variables or {})

    def close(self):
        try:
            self.proc.stdin.close()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
