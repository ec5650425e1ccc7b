# syntax=docker/dockerfile:1
# Build stage: Node only to fetch socket.io-client (npm ci), Python deps into a venv, catalogs compiled
# before the package is installed so the .mo files ship with it.
FROM python:3.11-slim AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml ./
COPY teleconsult ./teleconsult
COPY signaling ./signaling
COPY web ./web
RUN pip install "babel>=2.14" \
    && pybabel compile -d web/translations -D messages \
    && pip install .

# Runtime stage: no compiler, no Node.
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TELECONSULT_STATIC_DIR=/app/static \
    TELECONSULT_NODE_MODULES_DIR=/app/node_modules \
    TELECONSULT_DATABASE_URL=sqlite+aiosqlite:////app/var/teleconsult.sqlite3

RUN groupadd --system --gid 10001 teleconsult \
    && useradd --system --uid 10001 --gid teleconsult --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin teleconsult

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/node_modules ./node_modules
COPY static ./static
RUN mkdir -p /app/var && chown teleconsult:teleconsult /app/var

USER teleconsult
EXPOSE 8080
CMD ["teleconsult", "serve", "--host", "0.0.0.0", "--port", "8080"]
