# quart-framework service image: Hypercorn serving app.asgi:app, installed from a wheel.
# Build: docker build -t quart-framework .
# Run:   docker run -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=mysql+aiomysql://... quart-framework

# Build stage: the wheel, which carries the templates, migrations and hypercorn.toml
# (pyproject.toml maps them into the package).
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini hypercorn.toml ./
COPY app ./app
COPY alembic ./alembic
COPY templates ./templates
COPY static ./static
RUN pip wheel --no-deps --wheel-dir /wheels .

# Runtime stage: the pinned dependencies of requirements.lock, then the wheel; no source tree.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --requirement /tmp/requirements.lock
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/quart_framework-*.whl

WORKDIR /srv/quart-framework
RUN groupadd --system --gid 10001 quart \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /srv/quart-framework quart \
    && mkdir -p var \
    && chown quart:quart var
USER 10001:10001

# Production by default: SECRET_KEY must be given at run time. DATABASE_URL defaults to the
# embedded SQLite file in var/ (mount a volume there), or point it at MySQL.
ENV APP_ENV=production \
    BIND=0.0.0.0:8000 \
    WEB_CONCURRENCY=2 \
    LOG_FORMAT=json

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# Migrations run first (serialised by a MySQL lock when several containers start together).
CMD ["quart-framework", "serve", "--migrate"]
