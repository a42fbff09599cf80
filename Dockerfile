# Tierwise service image. Point it at a database with TIERWISE_DATABASE_URL; run
# `tierwise migrate` once per release (any replica may, they take turns), then N replicas of
# this image behind a gateway.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY dsl ./dsl
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 tierwise
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER tierwise
WORKDIR /home/tierwise
ENV TIERWISE_HOST=0.0.0.0 \
    TIERWISE_PORT=8000 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['TIERWISE_PORT']}/healthz\", timeout=4)"]
CMD ["tierwise", "serve"]
