# Image of the HITL review service (`python -m app`), also used for its one-shot jobs
# (`python -m app migrate`, `python -m app create-key`) and for the simulator
# (`python -m simulator`).
#
# No `# syntax=` line: the engine's built-in Dockerfile frontend (Docker Engine >= 20.10) has
# everything used here (multi-stage, RUN --mount=type=cache, COPY --chown), and a syntax line
# makes BuildKit fetch the frontend image from Docker Hub first, which fails on a machine with
# only a private or no registry.
#
# Two stages: the first builds a virtualenv with the project and its pinned dependencies (from
# pyproject.toml), the second is a fresh slim Python with only that virtualenv, running as an
# unprivileged user. Build it through compose, which passes the Python version from
# versions.env:   docker compose build app
# or by hand:     docker build --build-arg PYTHON_VERSION=<versions.env> -t hitl-review .

ARG PYTHON_VERSION

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# Wheels only, so the slim image needs no compiler (every pinned dependency ships them).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
 && pip install --only-binary=:all: -r requirements.txt
COPY app ./app
COPY simulator ./simulator
RUN pip install --no-deps . \
 && python -c "import app.main, simulator.__main__"

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_HOST=0.0.0.0 \
    APP_PORT=8000
# A fixed uid/gid so volume ownership is stable across rebuilds. /run/hitl-keys is where
# compose mounts the simulator's keys volume: a new volume takes this owner and mode.
RUN groupadd --system --gid 10001 hitl \
 && useradd --system --uid 10001 --gid hitl --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin hitl \
 && install -d -o hitl -g hitl -m 0700 /run/hitl-keys
COPY --from=build /opt/venv /opt/venv
# An empty working directory: the settings read an optional .env from here, and there is none.
WORKDIR /srv/hitl
USER 10001:10001
EXPOSE 8000
CMD ["python", "-m", "app", "serve"]
