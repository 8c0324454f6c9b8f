"""The skills pack (seed page 11): eleven skills installed as Claude Code
slash commands by scripts/install-skills.sh (frontmatter stripped, into
~/.claude/commands/, idempotent, --uninstall)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-skills.sh"
SKILLS = ["paca", "paca-setup", "paca-epic", "paca-clarify", "paca-breakdown", "paca-sprint",
          "paca-estimate", "paca-prioritize", "paca-do", "paca-test", "paca-doc"]

# Every tool a skill names must be one of our MCP tools.
TOOLS = set(__import__("test_40_mcp").PAGE_18)


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CLAUDE_COMMANDS_DIR"}
    env["HOME"] = str(home)
    r = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r


def test_eleven_skills_with_frontmatter_and_known_tools():
    found = sorted(p.name for p in (ROOT / "skills").iterdir() if (p / "SKILL.md").is_file())
    assert found == sorted(SKILLS)
    for name in SKILLS:
        text = (ROOT / "skills" / name / "SKILL.md").read_text()
        m = re.match(r"---\nname: (.+)\ndescription: (.+)\n---\n", text)
        assert m and m.group(1) == name and len(m.group(2)) > 20, name
        named = set(re.findall(r"`([a-z_]+)`", text)) | set(re.findall(r"\b([a-z]+_[a-z_]+)\(", text))
        tools = {t for t in named if "_" in t and (t.startswith(("list_", "get_", "create_", "update_", "delete_",
                                                                 "add_", "remove_", "set_", "move_", "write_",
                                                                 "read_", "complete_", "reorder_", "bulk_")))}
        unknown = tools - TOOLS
        assert not unknown, f"{name} names tools we do not have: {unknown}"


def test_install_is_idempotent_and_uninstall_removes(tmp_path):
    home = tmp_path
    commands = home / ".claude" / "commands"
    commands.mkdir(parents=True)
    (commands / "mine.md").write_text("keep me")
    out = run(home).stdout
    assert "11 written" in out
    for name in SKILLS:
        body = (commands / f"{name}.md").read_text()
        source = (ROOT / "skills" / name / "SKILL.md").read_text()
        assert not body.startswith("---") and "description:" not in body.splitlines()[0]
        assert body.strip() == source.split("---\n", 2)[2].strip()
    before = {p.name: p.stat().st_mtime_ns for p in commands.iterdir()}
    out = run(home).stdout
    assert "0 written, 11 already up to date" in out
    assert {p.name: p.stat().st_mtime_ns for p in commands.iterdir()} == before
    # A changed install is rewritten.
    (commands / "paca.md").write_text("stale")
    assert "1 written" in run(home).stdout
    assert (commands / "paca.md").read_text() != "stale"
    out = run(home, "--uninstall").stdout
    assert "Removed 11" in out
    assert sorted(p.name for p in commands.iterdir()) == ["mine.md"]
