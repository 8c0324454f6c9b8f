#!/usr/bin/env bash
# Paca-RS production install: one command on a machine with Docker.
#
#   deploy/install.sh [options] [-- extra `docker compose up` arguments]
#
# Writes deploy/.env from deploy/.env.example with strong random secrets
# (openssl rand, like Paca's installer), keeps an existing deploy/.env (only
# its empty secrets are filled in), checks the compose file, builds the image
# and brings the stack up (deploy/compose.yaml: nginx gateway, two API
# nodes, the agent runner, PostgreSQL, Valkey, MinIO). Safe to run again.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [options] [-- docker compose up arguments]

Creates deploy/.env with generated secrets if it does not exist (an existing
one is kept; only empty secrets are filled in), validates deploy/compose.yaml
and runs `docker compose --env-file .env up -d` in deploy/.

Options:
  --no-up        write and check deploy/.env only; do not start anything
  --reset-env    move an existing deploy/.env to .env.bak.<time> and start
                 from a fresh one (new secrets: an existing database keeps
                 the old admin, and data encrypted with the old
                 ENCRYPTION_KEY becomes unreadable)
  -y, --yes      accepted for compatibility (the script never prompts)
  -h, --help     this help

Taken from the environment when deploy/.env is created:
  PUBLIC_URL      external base URL (default http://localhost[:GATEWAY_PORT]);
                  COOKIE_SECURE follows its scheme
  GATEWAY_PORT    host port of the gateway (default 80)
  ADMIN_USERNAME  (default admin)
  ADMIN_PASSWORD  (default: 16 random letters and digits)
  PACA_IMAGE      image name to build and run (default paca-rs:local)
  PACA_COMPOSE    compose command (default: `docker compose`, else
                  `docker-compose`)

Generated: JWT_SECRET, ENCRYPTION_KEY, AGENT_API_KEY, INTERNAL_API_KEY
(openssl rand -hex 32), ADMIN_PASSWORD, POSTGRES_PASSWORD,
STORAGE_ACCESS_KEY_ID, STORAGE_SECRET_ACCESS_KEY. The file is mode 0600.

Examples:
  PUBLIC_URL=https://paca.example.com deploy/install.sh
  deploy/install.sh -- --scale agent-runner=0     # no Docker socket for agents
  deploy/install.sh -- --build                    # rebuild after an update
EOF
}

say()  { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

UP=1
RESET=0
UP_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --no-up) UP=0 ;;
        --reset-env) RESET=1 ;;
        -y|--yes) ;;
        --) shift; UP_ARGS=("$@"); break ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DEPLOY_DIR"
ENV_FILE="$DEPLOY_DIR/.env"
if [ ! -f .env.example ] || [ ! -f compose.yaml ]; then
    die "run this from a Paca-RS checkout (deploy/.env.example, deploy/compose.yaml)"
fi
command -v openssl >/dev/null || die "openssl is required to generate secrets (apt-get install openssl)"

# ------------------------------------------------------------ .env helpers
get_var() {  # the value of KEY in .env (last assignment wins), unquoted
    awk -v k="$1" '
        index($0, k "=") == 1 { v = substr($0, length(k) + 2) }
        END {
            if (v ~ /^".*"$/ || v ~ /^\047.*\047$/) v = substr(v, 2, length(v) - 2)
            print v
        }' "$ENV_FILE"
}

set_var() {  # KEY VALUE: replace KEY's line in .env, or append one
    local tmp
    tmp="$(mktemp "$ENV_FILE.XXXXXX")"
    KEY="$1" VALUE="$2" awk '
        BEGIN { k = ENVIRON["KEY"]; v = ENVIRON["VALUE"]; done = 0 }
        index($0, k "=") == 1 { if (!done) print k "=" v; done = 1; next }
        { print }
        END { if (!done) print k "=" v }' "$ENV_FILE" > "$tmp"
    chmod 600 "$tmp"
    mv "$tmp" "$ENV_FILE"
}

hex32()    { openssl rand -hex 32; }
password() {  # 16 letters and digits, like Paca's generated admin password
    local raw
    raw="$(openssl rand -base64 48 | LC_ALL=C tr -dc 'A-Za-z0-9')"
    printf '%s\n' "${raw:0:16}"
}

# ------------------------------------------------------------ .env
umask 077
if [ -f "$ENV_FILE" ] && [ "$RESET" = 1 ]; then
    backup="$ENV_FILE.bak.$(date +%Y%m%d%H%M%S)"
    mv "$ENV_FILE" "$backup"
    say "moved the old .env to $backup"
fi

CREATED=0
if [ ! -f "$ENV_FILE" ]; then
    cp .env.example "$ENV_FILE"
    CREATED=1
    for key in GATEWAY_PORT ADMIN_USERNAME ADMIN_PASSWORD PACA_IMAGE; do
        if [ -n "${!key:-}" ]; then set_var "$key" "${!key}"; fi
    done
    port="$(get_var GATEWAY_PORT)"
    case "$port" in ''|*[!0-9]*) die "GATEWAY_PORT must be a port number, not '$port'" ;; esac
    if [ -n "${PUBLIC_URL:-}" ]; then
        public_url="${PUBLIC_URL%/}"
    elif [ "$port" = 80 ]; then
        public_url="http://localhost"
    else
        public_url="http://localhost:$port"
    fi
    set_var PUBLIC_URL "$public_url"
    case "$public_url" in
        https://*) set_var COOKIE_SECURE true ;;
        http://*) set_var COOKIE_SECURE false ;;
        *) die "PUBLIC_URL must start with http:// or https://, not '$public_url'" ;;
    esac
    say "created $ENV_FILE"
else
    say "keeping $ENV_FILE (only empty secrets are filled in)"
fi
chmod 600 "$ENV_FILE"

GENERATED=()
fill() {  # KEY GENERATOR: give KEY a generated value when it is empty
    if [ -z "$(get_var "$1")" ]; then
        set_var "$1" "$("$2")"
        GENERATED+=("$1")
    fi
}
storage_user() { printf 'paca%s\n' "$(openssl rand -hex 8)"; }
fill JWT_SECRET hex32
fill ENCRYPTION_KEY hex32
fill AGENT_API_KEY hex32
fill ADMIN_PASSWORD password
fill POSTGRES_PASSWORD hex32
fill STORAGE_ACCESS_KEY_ID storage_user
fill STORAGE_SECRET_ACCESS_KEY hex32
# Paca's installer generates INTERNAL_API_KEY for its ai-agent's internal
# HTTP endpoints. Paca-RS's runner has none and does not read it; it is kept
# so that the same .env can serve Paca's own ai-agent service.
if ! grep -q '^INTERNAL_API_KEY=' "$ENV_FILE"; then
    printf '\n# Not read by Paca-RS (its agent runner has no internal HTTP API);\n# generated like Paca'"'"'s installer does, for a Paca ai-agent service.\n' >> "$ENV_FILE"
fi
fill INTERNAL_API_KEY hex32
if [ -z "$(get_var DOCKER_GID)" ] && [ -S /var/run/docker.sock ]; then
    set_var DOCKER_GID "$(stat -c %g /var/run/docker.sock)"
fi
[ ${#GENERATED[@]} -gt 0 ] && say "generated: ${GENERATED[*]}"

key="$(get_var ENCRYPTION_KEY)"
[[ "$key" =~ ^[0-9a-f]{64}$ ]] || die "ENCRYPTION_KEY in $ENV_FILE must be 64 lowercase hex characters (openssl rand -hex 32)"
[[ "$(get_var POSTGRES_PASSWORD)" =~ ^[A-Za-z0-9._~-]+$ ]] \
    || die "POSTGRES_PASSWORD in $ENV_FILE must be URL-safe (letters, digits, . _ ~ -): it goes into DATABASE_URL"
[ "${#GENERATED[@]}" -gt 0 ] || [ "$CREATED" = 1 ] || say "no secret changed"

# ------------------------------------------------------------ compose
if [ -n "${PACA_COMPOSE:-}" ]; then
    read -r -a COMPOSE <<< "$PACA_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    die "Docker Compose is required: install Docker Engine with the compose plugin (docker compose version)"
fi
# Compose prefers the shell's variables to .env's: leave out those that .env
# sets, so that .env is the whole configuration (a DATABASE_URL exported for
# development must not reach the stack).
IGNORED=()
RUN_COMPOSE=(env)
while IFS= read -r key; do
    if [ -n "${!key+x}" ]; then
        IGNORED+=("$key")
        RUN_COMPOSE+=(-u "$key")
    fi
done < <(sed -n 's/^\([A-Z][A-Z0-9_]*\)=.*/\1/p' "$ENV_FILE" | sort -u)
[ ${#IGNORED[@]} -gt 0 ] && say "ignoring from the environment (deploy/.env decides): ${IGNORED[*]}"
RUN_COMPOSE+=("${COMPOSE[@]}" --env-file "$ENV_FILE" -f compose.yaml)

say "checking compose.yaml with ${COMPOSE[*]}"
"${RUN_COMPOSE[@]}" config --quiet

if [ "$UP" = 0 ]; then
    say "not starting (--no-up); to start: cd $DEPLOY_DIR && ${COMPOSE[*]} --env-file .env up -d"
    exit 0
fi

if [ "${COMPOSE[0]}" = docker ] || [ "${COMPOSE[0]}" = docker-compose ]; then
    docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info)"
fi
say "starting: ${COMPOSE[*]} --env-file .env up -d ${UP_ARGS[*]:-}"
"${RUN_COMPOSE[@]}" up -d "${UP_ARGS[@]}"

port="$(get_var GATEWAY_PORT)"
port="${port:-80}"
health="http://127.0.0.1:$port/api/healthz"
if command -v curl >/dev/null; then
    say "waiting for $health"
    ok=0
    for _ in $(seq 1 90); do
        if curl -fsS --max-time 3 "$health" 2>/dev/null | grep -q '"status":"ok"'; then ok=1; break; fi
        sleep 2
    done
    [ "$ok" = 1 ] || warn "the API did not answer through the gateway within 3 minutes: ${COMPOSE[*]} --env-file .env logs api"
fi

cat <<EOF

Paca-RS is up at $(get_var PUBLIC_URL)  (gateway on port $port)
  admin user:     $(get_var ADMIN_USERNAME)
EOF
if printf '%s\n' "${GENERATED[@]:-}" | grep -qx ADMIN_PASSWORD; then
    echo "  admin password: $(get_var ADMIN_PASSWORD)   (also in $ENV_FILE)"
else
    echo "  admin password: ADMIN_PASSWORD in $ENV_FILE (used when the admin was first created)"
fi
cat <<EOF
  status:         cd $DEPLOY_DIR && ${COMPOSE[*]} --env-file .env ps
  logs:           cd $DEPLOY_DIR && ${COMPOSE[*]} --env-file .env logs -f api
  operator CLI:   cd $DEPLOY_DIR && ${COMPOSE[*]} --env-file .env exec api paca projections status
Keep $ENV_FILE safe: it holds every secret (back up ENCRYPTION_KEY with the database).
EOF
