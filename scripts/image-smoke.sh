#!/usr/bin/env bash
# Real image smoke test: build the image with buildah and run it hardened with podman.
#
# Checks: the multi-stage build succeeds (hash-checked dependencies); the container runs
# read-only, non-root (uid 10001), with every capability dropped; GET /healthz answers 200
# with no Kafka reachable; /readyz answers 503; the image HEALTHCHECK passes; nothing can
# be written outside /tmp; the development packages (birdsim, bridgedev) cannot be
# imported and `bridge simulator` says so in one line; SIGTERM stops it with exit code 0
# within the drain deadline. AWS_MSK_IAM: the default image stops at start with one line
# naming the build argument; one built with BRIDGE_EXTRAS=msk signs an MSK IAM token.
#
# Without systemd (containers, CI) podman logs "unable to get systemd connection" errors
# for its healthcheck timer: harmless, the HEALTHCHECK is run by hand below.
# Not part of the test suite (it needs root, apt packages and a few minutes). Usage:
#   sudo scripts/image-smoke.sh            # local Debian base built with debootstrap
#   sudo BASE_IMAGE=python:3.11-slim-bookworm scripts/image-smoke.sh   # registry base
# Environment:
#   BASE_IMAGE     base image for the build; unset = build a local bookworm base once
#   DEBIAN_MIRROR  mirror for debootstrap; default: the first one in the apt sources
#   SMOKE_DIR      working dir (container storage, rootfs); default /var/tmp/channel-bridge-smoke
#   SMOKE_PORT     host port on 127.0.0.1 for the container's 8080; default 18080
#   BRIDGE_EXTRAS  the image's optional extra (build argument): "" (default) or msk
#   KEEP=1         keep the built image and the container storage afterwards
set -euo pipefail

cd "$(dirname "$0")/.."

SMOKE_DIR=${SMOKE_DIR:-/var/tmp/channel-bridge-smoke}
SMOKE_PORT=${SMOKE_PORT:-18080}
IMAGE=localhost/channel-bridge:smoke
LOCAL_BASE=localhost/channel-bridge-base:bookworm
NAME=channel-bridge-smoke
STOP_TIMEOUT=30
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Own storage, vfs driver: works on any kernel and never touches other container storage.
STORE=(--root "$SMOKE_DIR/storage" --runroot "$SMOKE_DIR/run" --storage-driver vfs)
bh() { buildah "${STORE[@]}" "$@"; }
# runc and explicit ulimits: crun fails on hybrid-cgroup hosts when setting rlimits.
pm() { podman "${STORE[@]}" --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }

install_tools() {
    local missing=()
    for tool in buildah podman runc debootstrap; do
        command -v "$tool" > /dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || fail "missing ${missing[*]}; install them (apt-get) or run as root"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
}

debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri
    local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    uri=$(grep -hoE '^(URIs:|deb)[[:space:]]+[^[:space:]]+' "${files[@]}" 2> /dev/null \
        | awk '{print $2}' | grep -v security | head -n1 || true)
    [[ -n $uri ]] || fail "no Debian mirror in the apt sources; set DEBIAN_MIRROR"
    echo "$uri"
}

build_local_base() {
    if bh inspect --type image "$LOCAL_BASE" > /dev/null 2>&1; then
        log "local base $LOCAL_BASE already built"
        return
    fi
    log "building local base $LOCAL_BASE with debootstrap (python3 + venv, ~1 min)"
    local rootfs="$SMOKE_DIR/rootfs" ctx="$SMOKE_DIR/base"
    rm -rf "$rootfs" "$ctx"
    mkdir -p "$rootfs" "$ctx"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$(debian_mirror)" > "$SMOKE_DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$SMOKE_DIR/debootstrap.log"; fail "debootstrap"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$ctx/rootfs.tar" .
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/usr/bin/python3"]\n' > "$ctx/Containerfile"
    bh bud --quiet --isolation chroot -f "$ctx/Containerfile" -t "$LOCAL_BASE" "$ctx" > /dev/null
    rm -rf "$rootfs" "$ctx"
}

http_status() {
    python3 - "$1" << 'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print(0)
PY
}

cleanup() {
    local rc=$?
    if ((rc != 0)) && pm container exists "$NAME" 2> /dev/null; then
        echo "--- container logs ---" >&2
        pm logs "$NAME" 2>&1 | tail -n 40 >&2 || true
    fi
    pm rm -f "$NAME" > /dev/null 2>&1 || true
    if [[ ${KEEP:-0} != 1 ]]; then
        bh rmi -f "$IMAGE" > /dev/null 2>&1 || true
    fi
    exit "$rc"
}

main() {
    local started
    started=$(date +%s)
    install_tools
    mkdir -p "$SMOKE_DIR"
    trap cleanup EXIT

    local base=${BASE_IMAGE:-}
    if [[ -z $base ]]; then
        build_local_base
        base=$LOCAL_BASE
    fi

    log "building $IMAGE from $base"
    local ca_mount=()
    # Build-time only: lets pip verify the package index through the host's CA bundle
    # (Debian's pip uses the system bundle). Never part of the image.
    [[ -r $CA_BUNDLE ]] && ca_mount=(-v "$CA_BUNDLE:$CA_BUNDLE:ro")
    bh bud --isolation chroot --network host --format docker --layers \
        "${ca_mount[@]}" \
        --build-arg "BASE_IMAGE=$base" \
        --build-arg "BRIDGE_EXTRAS=${BRIDGE_EXTRAS:-}" \
        --build-arg "REVISION=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)" \
        -t "$IMAGE" .

    log "image config"
    bh images --format 'size={{.Size}}' "$IMAGE"
    bh inspect --type image --format \
        'user={{.Docker.Config.User}} entrypoint={{.Docker.Config.Entrypoint}} cmd={{.Docker.Config.Cmd}} healthcheck={{.Docker.Config.Healthcheck.Test}}' \
        "$IMAGE"
    [[ $(bh inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE") == 10001:10001 ]] \
        || fail "image USER is not 10001:10001"

    log "running it hardened: read-only, cap-drop ALL, no-new-privileges, non-root"
    pm rm -f "$NAME" > /dev/null 2>&1 || true
    pm run -d --name "$NAME" \
        -p "127.0.0.1:$SMOKE_PORT:8080" \
        --read-only --tmpfs /tmp:rw,size=64m,mode=1777 \
        --cap-drop ALL --security-opt no-new-privileges \
        --user 10001:10001 \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -e BRIDGE_WEBHOOK_INSECURE=true \
        -e BRIDGE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9 \
        -e BRIDGE_SHUTDOWN_TIMEOUT_S=10 \
        "$IMAGE" run --role ingest > /dev/null

    log "waiting for /healthz"
    local status=0
    for _ in $(seq 1 60); do
        status=$(http_status "http://127.0.0.1:$SMOKE_PORT/healthz")
        [[ $status == 200 ]] && break
        [[ $(pm inspect --format '{{.State.Running}}' "$NAME") == true ]] || fail "container exited"
        sleep 1
    done
    [[ $status == 200 ]] || fail "/healthz answered $status"
    echo "/healthz -> 200"

    status=$(http_status "http://127.0.0.1:$SMOKE_PORT/readyz")
    echo "/readyz -> $status (no Kafka reachable)"
    [[ $status == 503 ]] || fail "/readyz should be 503 without Kafka, got $status"

    pm healthcheck run "$NAME" > /dev/null 2>&1 || fail "image HEALTHCHECK failed"
    echo "HEALTHCHECK -> healthy"

    local uid
    uid=$(pm exec "$NAME" /opt/venv/bin/python -c 'import os; print(os.getuid())')
    [[ $uid == 10001 ]] || fail "runs as uid $uid"
    echo "uid -> $uid"
    if pm exec "$NAME" /opt/venv/bin/python -c 'open("/opt/venv/probe", "w")' > /dev/null 2>&1; then
        fail "root filesystem is writable"
    fi
    pm exec "$NAME" /opt/venv/bin/python -c 'open("/tmp/probe", "w").write("ok")' \
        || fail "/tmp is not writable"
    echo "read-only root, writable /tmp -> ok"

    local package said
    for package in birdsim bridgedev; do
        if pm exec "$NAME" /opt/venv/bin/python -c "import $package" > /dev/null 2>&1; then
            fail "the development package $package is importable in the image"
        fi
    done
    echo "import birdsim / import bridgedev -> ModuleNotFoundError"
    said=$(pm exec "$NAME" /opt/venv/bin/bridge simulator 2>&1) \
        && fail "bridge simulator ran in the image"
    [[ $said == "bridge simulator: a development tool, not installed here"* ]] \
        || fail "bridge simulator said: $said"
    echo "bridge simulator -> $said"

    local msk=(-e BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL -e BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM
        -e BRIDGE_KAFKA_AWS_REGION=eu-west-1 -e BRIDGE_HTTP_PORT=8081)
    if [[ ${BRIDGE_EXTRAS:-} == msk ]]; then
        # Fixed credentials from the environment (the chain's first link); no network.
        said=$(pm exec "${msk[@]}" -e AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
            -e AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
            -e AWS_EC2_METADATA_DISABLED=true "$NAME" /opt/venv/bin/python -c \
            'from bridge.kafka.auth import MskIamTokenProvider as P, decode_msk_token as d
print(d(P("eu-west-1").sign()[0]).split("&")[0])') || fail "cannot sign an MSK IAM token"
        [[ $said == "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect" ]] \
            || fail "MSK IAM token: $said"
        echo "AWS_MSK_IAM token (BRIDGE_EXTRAS=msk) -> $said..."
    else
        said=$(pm exec "${msk[@]}" "$NAME" /opt/venv/bin/bridge run --role ingest 2>&1) \
            && fail "bridge run started with AWS_MSK_IAM and no signer"
        [[ $said == "bridge run: BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs AWS's signer package"* ]] \
            || fail "AWS_MSK_IAM without the signer said: $said"
        [[ $said == *--build-arg\ BRIDGE_EXTRAS=msk* && $(wc -l <<< "$said") == 1 ]] \
            || fail "AWS_MSK_IAM without the signer said: $said"
        echo "AWS_MSK_IAM without BRIDGE_EXTRAS=msk -> $said"
    fi

    log "stopping with SIGTERM (timeout ${STOP_TIMEOUT}s)"
    local t0 t1 code
    t0=$(date +%s)
    pm stop --time "$STOP_TIMEOUT" "$NAME" > /dev/null
    t1=$(date +%s)
    code=$(pm inspect --format '{{.State.ExitCode}}' "$NAME")
    echo "exit code $code after $((t1 - t0)) s"
    [[ $code == 0 ]] || fail "exit code $code after SIGTERM (137 = killed after the timeout)"

    log "PASS: image smoke test ($(($(date +%s) - started)) s)"
}

main "$@"
