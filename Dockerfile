# syntax=docker/dockerfile:1
# Channel Bridge image: one image for both roles (`bridge run --role ingest|commands|all`).
#
# BASE_IMAGE is any Debian-based image with python3 (3.11) and the venv module; releases
# pin the default by digest, offline builds pass a locally built base
# (see docs/deployment.md and scripts/image-smoke.sh).
ARG BASE_IMAGE=python:3.11-slim-bookworm
# BRIDGE_EXTRAS: an optional extra of pyproject.toml installed from its own hashed lock.
# "msk": AWS's signer for BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM (requirements/msk.txt,
# with boto3 and botocore); "" (the default): none, the image runs every other mode.
ARG BRIDGE_EXTRAS=""

# ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /src

# Dependencies in their own layer, rebuilt only when the lock files change. Every file is
# checked against its hash; --no-deps because the lock file is already the full closure
# (an extra's lock is constrained by runtime.txt: shared packages keep their pins).
ARG BRIDGE_EXTRAS
COPY requirements/runtime.txt requirements/build.txt requirements/msk.txt requirements/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
    && case "${BRIDGE_EXTRAS}" in \
         "") ;; \
         msk) /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/msk.txt ;; \
         *) echo "BRIDGE_EXTRAS=${BRIDGE_EXTRAS}: not an extra of the image (\"\" or msk)" >&2; exit 1 ;; \
       esac \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt

# The project itself: built with the hash-pinned backend from /opt/build (no download
# during the build) and installed without touching the dependencies; `pip check` fails
# the build if the lock misses a dependency of pyproject.toml. Then pip and setuptools
# leave the runtime venv (nothing installs packages at run time).
# Only bridge/ is copied: the development packages next to it (birdsim, the Bird
# simulator with its open control API; bridgedev, `bridge dev`) are not in the image,
# and the build fails if either became importable.
COPY pyproject.toml README.md ./
COPY bridge/ bridge/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --no-deps --no-index /tmp/wheels/channel_bridge-*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/venv/bin/bridge --help > /dev/null \
    && /opt/venv/bin/python -I -c "import importlib.util as u, sys; \
found = [m for m in ('birdsim', 'bridgedev') if u.find_spec(m)]; \
sys.exit(f'development packages in the image: {found}' if found else 0)"

# ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG BRIDGE_EXTRAS
LABEL org.opencontainers.image.title="channel-bridge" \
      org.opencontainers.image.description="Links Bird's channel platform to Kafka" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      channel-bridge.extras="${BRIDGE_EXTRAS}"

# Nothing is written outside /tmp: no bytecode caches, HOME in /tmp, so the container
# runs with a read-only root filesystem and an emptyDir (or tmpfs) at /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    PATH=/opt/venv/bin:${PATH} \
    BRIDGE_HTTP_PORT=8080

# Numeric uid/gid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --gid 10001 bridge \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin bridge

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# For docker/podman (Kubernetes uses the chart's probes). No curl in the image: python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BRIDGE_HTTP_PORT', '8080') + '/healthz', timeout=3)"]

# dumb-init is PID 1: it forwards SIGTERM to the bridge (which drains within
# BRIDGE_SHUTDOWN_TIMEOUT_S and exits 0) and reaps zombies.
ENTRYPOINT ["/opt/venv/bin/dumb-init", "--", "/opt/venv/bin/bridge"]
CMD ["run", "--role", "all"]
