#!/usr/bin/env bash
# Build the Docker backend's image, only when something it is made of changed.
#
#   docker/build-image.sh [--ca-bundle FILE] [--image NAME] [--base NAME] [--mirror URL]
#                         [--dockerfile FILE]
#
# 1. The base image (NAME default agent-sandbox-base:bookworm) is made with
#    debootstrap when missing: no container registry is needed.
# 2. The agent image (NAME default agent-sandbox:latest, the backend's
#    AGENT_SANDBOX_DOCKER_IMAGE) is also tagged REPO:<content hash>, where the
#    hash covers the Dockerfile, requirements.txt (the lock's sandbox packages,
#    agent_sandbox/backends/sandbox-requirements.txt), agent_sandbox/ and the CA
#    bundle; when that tag exists nothing is rebuilt, only NAME re-pointed.
#
# --ca-bundle FILE (or AGENT_SANDBOX_DOCKER_CA_BUNDLE): PEM certificates the
# image must trust, e.g. a TLS-intercepting proxy's; pip inside the build and
# the agent at run time then trust them.
# --dockerfile FILE: build that Dockerfile instead, its context only itself and
# the CA bundle (docker/python-slim.Dockerfile, the Modal emulator's stand-in
# for python:3.11-slim-bookworm).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${AGENT_SANDBOX_DOCKER_IMAGE:-agent-sandbox:latest}"
BASE="${AGENT_SANDBOX_DOCKER_BASE:-agent-sandbox-base:bookworm}"
MIRROR="${AGENT_SANDBOX_DOCKER_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${AGENT_SANDBOX_DOCKER_CA_BUNDLE:-}"
DOCKERFILE=""
DOCKER="${DOCKER:-docker}"

while [ $# -gt 0 ]; do
    case "$1" in
        --ca-bundle) CA_BUNDLE="$2"; shift 2 ;;
        --image) IMAGE="$2"; shift 2 ;;
        --base) BASE="$2"; shift 2 ;;
        --mirror) MIRROR="$2"; shift 2 ;;
        --dockerfile) DOCKERFILE="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -n "$CA_BUNDLE" ] && [ ! -r "$CA_BUNDLE" ]; then
    echo "build-image.sh: cannot read CA bundle $CA_BUNDLE" >&2; exit 2
fi

log() { echo "build-image.sh: $*" >&2; }
case "${IMAGE##*/}" in  # REPO[:TAG], where REPO may hold a registry's host:port
    *:*) REPO="${IMAGE%:*}" ;;
    *) REPO="$IMAGE"; IMAGE="$IMAGE:latest" ;;
esac

if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
    log "building the base image $BASE with debootstrap from $MIRROR"
    rootfs="$(mktemp -d /tmp/agent-sandbox-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | "$DOCKER" import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

# The build context holds only what the image is made of.
context="$(mktemp -d /tmp/agent-sandbox-context.XXXXXX)"
trap 'rm -rf "$context"' EXIT
if [ -n "$DOCKERFILE" ]; then
    cp "$DOCKERFILE" "$context/Dockerfile"
else
    cp "$ROOT/docker/Dockerfile" "$context/"
    cp "$ROOT/agent_sandbox/backends/sandbox-requirements.txt" "$context/requirements.txt"
    (cd "$ROOT" && tar -c --exclude=__pycache__ --exclude='*.pyc' agent_sandbox) | tar -C "$context" -x
fi
if [ -n "$CA_BUNDLE" ]; then cp "$CA_BUNDLE" "$context/extra-ca.crt"; else : >"$context/extra-ca.crt"; fi

hash="$(cd "$context" && { echo "$BASE"; find . -type f | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)"
if "$DOCKER" image inspect "$REPO:$hash" >/dev/null 2>&1; then
    "$DOCKER" tag "$REPO:$hash" "$IMAGE"
    log "$IMAGE ($REPO:$hash) is up to date"
    exit 0
fi
log "building $IMAGE ($REPO:$hash)"
start=$SECONDS
# The classic builder: it needs no buildx plugin, and the build uses nothing newer.
DOCKER_BUILDKIT=0 "$DOCKER" build --build-arg "BASE=$BASE" --label "agent-sandbox.content-hash=$hash" \
    -t "$REPO:$hash" -t "$IMAGE" "$context" >"$context.log" 2>&1 \
    || { tail -30 "$context.log" >&2; log "build failed (full log: $context.log)"
         if grep -q CERTIFICATE_VERIFY_FAILED "$context.log"; then
             log "TLS is intercepted here: pass the CA bundle this machine trusts, e.g." \
                 "--ca-bundle /etc/ssl/certs/ca-certificates.crt"
         fi
         exit 1; }
rm -f "$context.log"
log "built $IMAGE ($REPO:$hash) in $((SECONDS - start))s"
# Older content-hash tags are superseded (their layers are mostly shared anyway).
"$DOCKER" images "$REPO" --format '{{.Tag}}' | grep -E '^[0-9a-f]{16}$' | grep -vx "$hash" \
    | sed "s|^|$REPO:|" | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
