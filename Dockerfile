# One image recipe for every service, built from the repository root:
#   docker build --build-arg SERVICE=workflow --build-arg PROBE=grpc://127.0.0.1:50051 -t comfyserve-workflow .
# SERVICE is gateway, auth, workflow, storage, executor (notifier once it
# serves); PROBE is what the health check asks (runtime.probe: grpc:// or http://).
#   gateway  http://127.0.0.1:8000/health/live     storage  grpc://127.0.0.1:50052
#   workflow grpc://127.0.0.1:50051                executor http://127.0.0.1:9104/health/live
#   auth     grpc://127.0.0.1:50053
# The executor image drives a remote ComfyUI (EXECUTOR_COMFYUI_URL, a sidecar) or
# one copied into it on the CPU; a GPU image bases on a CUDA runtime with a CUDA
# build of torch instead.
FROM python:3.11-slim

ARG SERVICE
ARG PROBE
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1

WORKDIR /app
# The lockfile covers the whole workspace, so every member's metadata is needed;
# only the one service and its dependencies are installed. Members install in
# place, so each service's Alembic scripts stay at services/<service>/migrations.
COPY pyproject.toml uv.lock README.md ./
COPY libs ./libs
COPY services ./services
RUN test -n "$SERVICE" -a -n "$PROBE" \
    && uv sync --frozen --no-dev --package "comfyserve-$SERVICE"

RUN useradd --system --uid 10001 comfyserve
USER comfyserve
# Containers listen on every interface; ports stay each service's defaults.
ENV PATH="/app/.venv/bin:${PATH}" \
    SERVICE=${SERVICE} \
    PROBE=${PROBE} \
    GATEWAY_HOST=0.0.0.0 \
    EXECUTOR_HTTP_HOST=0.0.0.0
EXPOSE 8000 50051 50052 9102 9103 9104
HEALTHCHECK --interval=10s --timeout=3s CMD python -m comfyserve.runtime.probe "$PROBE"
# Every service drains on SIGTERM within its grace period (see its README).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sh", "-c", "exec python -m \"comfyserve.$SERVICE\" \"$@\"", "--"]
