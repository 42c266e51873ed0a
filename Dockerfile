# One image recipe for every CPU service, built from the repository root:
#   docker build --build-arg SERVICE=workflow -t comfyserve-workflow .
# SERVICE is gateway, auth, workflow, storage or notifier. The executor, on a
# CUDA base with ComfyUI, has its own: deploy/docker/executor.Dockerfile.
# The Helm chart (deploy/helm) expects <repository>-<service>:<tag>.
#
# PROBE (optional) is what Docker's health check asks (runtime.probe: grpc://
# or http://); unset, each service's default port. Kubernetes ignores it and
# uses the chart's probes.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# The service's third-party dependencies from the lockfile alone, so this
# layer is rebuilt only when the lockfile changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    test -n "$SERVICE" \
    && uv sync --frozen --no-dev --no-install-workspace --package "comfyserve-$SERVICE"
# Then the workspace members it needs. They install in place, so each service's
# Alembic scripts stay at services/<service>/migrations.
COPY pyproject.toml uv.lock README.md ./
COPY libs ./libs
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "comfyserve-$SERVICE"

FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PROBE
RUN useradd --system --uid 10001 --user-group --no-create-home comfyserve
WORKDIR /app
# Only the environment and the sources: no uv, no build cache.
COPY --from=build /app /app
USER 10001:10001
# Containers listen on every interface; ports stay each service's defaults.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE=${SERVICE} \
    PROBE=${PROBE} \
    GATEWAY_HOST=0.0.0.0
EXPOSE 8000 50051 50052 50053 50054 9101 9102 9103 9105 9106
HEALTHCHECK --interval=10s --timeout=3s CMD case "$SERVICE" in \
      gateway) t=http://127.0.0.1:8000/health/live ;; auth) t=grpc://127.0.0.1:50053 ;; \
      workflow) t=grpc://127.0.0.1:50051 ;; storage) t=grpc://127.0.0.1:50052 ;; \
      notifier) t=grpc://127.0.0.1:50054 ;; esac; \
    exec python -m comfyserve.runtime.probe "${PROBE:-$t}"
# Every service drains on SIGTERM within its grace period (see its README).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sh", "-c", "exec python -m \"comfyserve.$SERVICE\" \"$@\"", "--"]
