#!/usr/bin/env bash
# The Docker API for agent sandbox tests (TESTING.md): Podman's
# Docker-compatible service on a private socket, and the stand-in
# agent-server packed into a local image (no image can be pulled here).
#
#   bash tests/agent-sandbox/podman.sh <root>     # prints DOCKER_HOST=… and AGENT_SERVER_IMAGE=…
#
# Idempotent and cached: podman is installed only when missing, the service
# started only when its socket does not answer, and the image rebuilt only
# when the stand-in binary changed (its sha256 is the image tag).
#
# Every podman command is bounded (`pm`): a CLI call that waits on storage
# held by a wedged container must fail this script, not hold CI until its
# deadline.
set -euo pipefail
ROOT="${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
SOCK=/run/paca-podman.sock
BIN="$ROOT/target/debug/stand-in-agent-server"
log() { printf '  %s\n' "$*" >&2; }
pm() { local secs="$1"; shift; timeout --kill-after=10 "$secs" podman "$@"; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    log "apt-get install -y podman runc"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
# runc (crun needs cgroup features these machines lack), no default ulimits
# (the container may not raise them here).
if ! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf
fi
answers() { curl -fsS --max-time 3 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
# A service left by an earlier checkout whose directory is gone answers
# `_ping` but cannot start containers: replace it.
for pid in $(pgrep -f "podman system service .*unix://$SOCK" || true); do
    if readlink "/proc/$pid/cwd" 2>/dev/null | grep -q ' (deleted)$'; then
        log "replacing the podman service $pid (its working directory was deleted)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
done
if ! answers; then
    log "podman system service --time=0 unix://$SOCK"
    rm -f "$SOCK"
    # Started from `/`: the service outlives this checkout, and with its
    # working directory deleted (a CI clone removed) every container it
    # creates fails ("write child: broken pipe") while `_ping` still answers.
    # The redirections are the subshell's, and it execs the service: no
    # process may keep this script's stdout open, or a caller reading it to
    # the end (`$(…)`, a captured subprocess) waits as long as the service
    # lives (stop 28's CI did, until its deadline).
    (cd / && exec setsid nohup podman system service --time=0 "unix://$SOCK") \
        >"$ROOT/target/podman-service.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do answers && break; sleep 0.25; done
    answers || { echo "podman service does not answer on $SOCK (see target/podman-service.log)" >&2; exit 1; }
fi

[ -x "$BIN" ] || cargo build -q -p agent-runner --bin stand-in-agent-server
TAG="$(sha256sum "$BIN" | cut -c1-16)"
IMAGE="localhost/paca-test/stand-in-agent-server:$TAG"
if ! pm 60 image exists "$IMAGE"; then
    # A root filesystem holding the binary and the host's shared libraries it
    # links (glibc), so no static toolchain is needed.
    dir="$(mktemp -d)"
    mkdir -p "$dir/bin" "$dir/tmp" "$dir/workspace"
    cp "$BIN" "$dir/bin/agent-server"
    for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
        mkdir -p "$dir$(dirname "$lib")"
        cp -L "$lib" "$dir$lib"
    done
    tar -C "$dir" -cf "$dir.tar" .
    log "podman import $IMAGE"
    imported=0
    pm 300 import -q --change 'ENTRYPOINT ["/bin/agent-server"]' --change 'EXPOSE 8000/tcp' \
        "$dir.tar" "$IMAGE" >/dev/null || imported=$?
    rm -rf "$dir" "$dir.tar"
    [ "$imported" = 0 ] || { echo "podman import of $IMAGE failed or took over 300 s (exit $imported)" >&2; exit 1; }
    # Older builds of the stand-in are not needed any more. Without --force:
    # an image a leftover container still uses is kept, rather than stopping
    # that container (which can wait forever on a wedged one).
    for old in $(pm 60 images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null \
        | grep '^localhost/paca-test/stand-in-agent-server:' | grep -v ":$TAG\$" || true); do
        pm 30 rmi "$old" >/dev/null 2>&1 || log "kept $old (in use, or podman did not answer)"
    done
fi
echo "DOCKER_HOST=unix://$SOCK"
echo "AGENT_SERVER_IMAGE=$IMAGE"
