# cxone-role-sync: the consumer as a small, non-root image.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The locked versions first (`make lock`), so the image is the same on every build; the
# project itself then adds no dependency of its own choosing.
COPY requirements.lock ./
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY consumer ./consumer
# EXTRAS="[sandbox]" adds the CXone simulator, for docker compose's sandbox profile; those extra
# packages are not in the lock (the image for a tenant installs none of them).
ARG EXTRAS=""
RUN /opt/venv/bin/pip install --no-deps . \
    && if [ -n "$EXTRAS" ]; then /opt/venv/bin/pip install ".${EXTRAS}"; fi \
    && /opt/venv/bin/pip check

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('METRICS_PORT', '9400') + '/healthz', timeout=2)"]
ENTRYPOINT ["cxone-role-sync"]
CMD ["run"]
