#!/usr/bin/env bash
# Install the Paca skills (skills/<name>/SKILL.md) as Claude Code slash
# commands: the YAML frontmatter is stripped and the body written to
# ~/.claude/commands/<name>.md, which Claude Code exposes as /<name>.
#
#   bash scripts/install-skills.sh              # install or update (idempotent)
#   bash scripts/install-skills.sh --uninstall  # remove the commands it installs
#
# Environment:
#   CLAUDE_COMMANDS_DIR  target directory (default: $HOME/.claude/commands)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SKILLS_DIR="$ROOT/skills"
TARGET="${CLAUDE_COMMANDS_DIR:-$HOME/.claude/commands}"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

mode=install
case "${1:-}" in
    "") ;;
    --uninstall) mode=uninstall ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
esac

[ -d "$SKILLS_DIR" ] || { echo "no skills directory at $SKILLS_DIR" >&2; exit 1; }

# Body of a SKILL.md without its leading '---' ... '---' frontmatter.
strip_frontmatter() {
    awk 'NR == 1 && $0 == "---" { in_fm = 1; next }
         in_fm && $0 == "---" { in_fm = 0; skip_blank = 1; next }
         in_fm { next }
         skip_blank && $0 == "" { next }
         { skip_blank = 0; print }' "$1"
}

names=()
for dir in "$SKILLS_DIR"/*/; do
    name="$(basename "$dir")"
    [ -f "$dir/SKILL.md" ] && names+=("$name")
done
[ "${#names[@]}" -gt 0 ] || { echo "no skills found in $SKILLS_DIR" >&2; exit 1; }

if [ "$mode" = uninstall ]; then
    removed=0
    for name in "${names[@]}"; do
        if [ -f "$TARGET/$name.md" ]; then
            rm -f "$TARGET/$name.md"
            removed=$((removed + 1))
        fi
    done
    echo "Removed $removed Paca command(s) from $TARGET"
    exit 0
fi

mkdir -p "$TARGET"
installed=0
unchanged=0
for name in "${names[@]}"; do
    dest="$TARGET/$name.md"
    tmp="$(mktemp "$TARGET/.$name.XXXXXX")"
    strip_frontmatter "$SKILLS_DIR/$name/SKILL.md" > "$tmp"
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        unchanged=$((unchanged + 1))
    else
        chmod 0644 "$tmp"
        mv -f "$tmp" "$dest"
        installed=$((installed + 1))
    fi
done

echo "Paca commands in $TARGET: $installed written, $unchanged already up to date"
echo
printf '  %-18s %s\n' "Command" "Source"
for name in "${names[@]}"; do
    printf '  %-18s %s\n' "/$name" "skills/$name/SKILL.md"
done
echo
echo "Next: connect the MCP server (run /paca-setup, or see docs/mcp.md), then restart Claude Code."
