#!/usr/bin/env bash
# Make the Docker backend usable on this machine, doing only what is missing:
#   1. install docker.io and debootstrap (Debian packages),
#   2. start dockerd in the background when no engine answers (log: $DOCKERD_LOG),
#   3. build the sandbox image (docker/build-image.sh; rebuilt only on changes), and the
#      Modal emulator's stand-in for python:3.11-slim-bookworm (docker/python-slim.Dockerfile).
# The image trusts this machine's CA bundle too (TLS-intercepting proxies):
# AGENT_SANDBOX_DOCKER_CA_BUNDLE=FILE picks another one, empty for none.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/agent-sandbox-dockerd.log}"
CA_BUNDLE="${AGENT_SANDBOX_DOCKER_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
log() { echo "docker-engine.sh: $*" >&2; }

missing=""
command -v dockerd >/dev/null || missing="$missing docker.io"
command -v debootstrap >/dev/null || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    log "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# A dockerd killed without cleaning up (the end of a session, a reboot) leaves pid
# files that make the next one refuse to start: drop those whose process is gone.
clear_stale_pid() {
    pidfile="$1"
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    # gone, or a zombie not yet reaped: either way no engine runs under it
    if [ -z "$pid" ] || [ ! -d "/proc/$pid" ] || grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
        log "removing stale $pidfile"
        $SUDO rm -f "$pidfile"
    fi
}

if ! docker info >/dev/null 2>&1; then
    clear_stale_pid /var/run/docker.pid
    clear_stale_pid /var/run/docker/containerd/containerd.pid
    log "starting dockerd (log: $DOCKERD_LOG)"
    $SUDO sh -c "setsid nohup dockerd >'$DOCKERD_LOG' 2>&1 </dev/null &"
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        log "dockerd did not come up within 60s; the end of its log:"
        tail -20 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
fi

ca=()
if [ -n "$CA_BUNDLE" ] && [ -r "$CA_BUNDLE" ]; then ca=(--ca-bundle "$CA_BUNDLE"); fi
"$ROOT/docker/build-image.sh" "${ca[@]}"
# The Modal emulator's stand-in for python:3.11-slim-bookworm, on which its Docker runtime
# builds each Modal image's recipe (modal_emulator/image_builds.py).
"$ROOT/docker/build-image.sh" "${ca[@]}" --dockerfile "$ROOT/docker/python-slim.Dockerfile" \
    --image agent-sandbox-python:3.11-slim-bookworm
