ARG PYTHON_IMAGE=python:3.12-slim
# back-knee-cds: the CDS Hooks service as a container image.
#   docker build -t back-knee-cds .
#   docker run -p 8080:8080 -e CDS_TRUSTED_CLIENTS_FILE=... back-knee-cds
# PYTHON_IMAGE must stay the base of every stage: CI passes a local stand-in for it.

# ---- builder: a virtualenv with the pinned dependencies, then the project itself ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# The build backend the project declares, pinned, so the install below needs no build isolation.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install setuptools==80.9.0 wheel==0.45.1

WORKDIR /app
# Dependencies first, read from pyproject.toml (every one pinned with ==): this layer is
# rebuilt only when pyproject.toml changes, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt

# The project, installed in place (editable) so that `rules/` and the Alembic migrations are
# found next to the `service` package exactly as in a checkout. `.dockerignore` keeps tests,
# caches, virtualenvs and local data out of this copy.
COPY . .
# Then the build tools leave the venv: nothing at run time installs packages.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation -e . \
    && /opt/venv/bin/python -m compileall -q /app/service \
    && rm -rf /app/*.egg-info /app/build \
    && /opt/venv/bin/python -m pip uninstall --yes setuptools wheel pip

# ---- runtime: the venv and the project, a non-root user, no compilers or pip caches ------
FROM ${PYTHON_IMAGE}

# uid/gid 10001: outside the range of users a host or a base image usually defines.
RUN groupadd --system --gid 10001 cds \
    && useradd --system --uid 10001 --gid cds --home-dir /var/lib/back-knee-cds \
        --no-create-home --shell /usr/sbin/nologin cds \
    && mkdir -p /var/lib/back-knee-cds \
    && chown cds:cds /var/lib/back-knee-cds

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

# Defaults for production; compose files and `docker run -e` override them.
# - CDS_AUTH=jwt: every CDS Hooks call needs a client JWT (set CDS_TRUSTED_CLIENTS_FILE).
# - CDS_MIGRATE_ON_START: the service applies the Alembic migrations itself once the database
#   answers, under a PostgreSQL advisory lock, so several replicas can start at once.
# - /var/lib/back-knee-cds is the writable data directory: the patient-id hashing key is
#   generated there on first start (mount a volume to keep it; with several replicas give them
#   all the same CDS_PATIENT_KEY instead) and the SQLite file lives there when no
#   CDS_DATABASE_URL is given.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDS_AUTH=jwt \
    CDS_LOG_FORMAT=json \
    CDS_RULES_DIR=/app/rules \
    CDS_MIGRATE_ON_START=true \
    CDS_PATIENT_KEY_FILE=/var/lib/back-knee-cds/patient-key \
    CDS_DATABASE_URL=sqlite:////var/lib/back-knee-cds/back-knee-cds.sqlite3

WORKDIR /app
USER 10001:10001
EXPOSE 8080

# No curl in the image: python asks /health/ready (200 = rules loaded and database answers).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})); sys.exit(0 if r.open('http://127.0.0.1:8080/health/ready', timeout=4).status == 200 else 1)"]

CMD ["back-knee-cds", "serve", "--host", "0.0.0.0", "--port", "8080"]
