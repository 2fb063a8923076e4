# syntax=docker/dockerfile:1
# Konsul: one image, two programs. `konsul` (the node) is the default command; the operator runs
# the same image with `konsul-operator`. Build:  docker build -t konsul:0.1.0 .

# Both stages on the same Python (the venv is copied from one to the other by path).
ARG PYTHON_VERSION=3.11

# --- build: a full Python image (compilers, headers) builds every wheel into a venv ---
FROM python:${PYTHON_VERSION}-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/konsul
WORKDIR /src
# -P keeps /src off sys.path: from here, `python -m` and `-c` would take the source tree's
# operator/ for the standard library's operator module (and check the sources, not the install).
# Dependencies first, read from pyproject.toml alone: a layer that survives code edits.
COPY pyproject.toml ./
RUN /opt/konsul/bin/python -P -c 'import tomllib; \
print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
    > /tmp/requirements.txt \
    && /opt/konsul/bin/pip install -r /tmp/requirements.txt
# Then the two packages.
COPY README.md ./
COPY konsul ./konsul
COPY operator ./operator
RUN /opt/konsul/bin/pip install --no-deps . \
    && /opt/konsul/bin/python -P -m compileall -q /opt/konsul/lib \
    && /opt/konsul/bin/konsul-operator --help >/dev/null \
    && /opt/konsul/bin/python -P -c "import konsul, konsul_operator"

# --- runtime: slim base, no compilers, only the venv, a non-root user ---
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="konsul" \
      org.opencontainers.image.description="Konsul node and konsul-operator" \
      org.opencontainers.image.source="https://github.com/konsul/konsul"
# UID/GID 10001: what the operator's pods (runAsUser) and the chart's podSecurityContext use.
RUN groupadd --system --gid 10001 konsul \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin konsul \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/konsul /opt/konsul
# Bytecode is compiled at build time: the root filesystem can be read-only.
ENV PATH=/opt/konsul/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KONSUL_HOST=0.0.0.0 \
    KONSUL_PORT=8500 \
    KONSUL_DATA_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8500 7000
CMD ["konsul"]
