# The Sluice image: one image, one `sluice` command; compose.yaml picks the subcommand
# (api, worker, sink, migrate, topics) per service.
# The door's compiled path (fastpath/) is built into a wheel in a Rust stage on the same
# Debian release as the runtime image, so the wheel links against the same glibc.
FROM rust:1-slim-bookworm AS fastpath
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir "maturin>=1.5,<2"
COPY fastpath /fastpath
RUN /opt/build/bin/maturin build --release --manifest-path /fastpath/Cargo.toml --out /wheels

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs, so local state (.venv, .sluice, .git) never enters the image.
COPY pyproject.toml README.md ./
COPY sluice ./sluice
COPY schemas ./schemas
COPY producer_api ./producer_api
COPY ingest ./ingest
COPY streams ./streams
COPY sinks ./sinks
COPY store ./store
COPY runtime ./runtime
COPY --from=fastpath /wheels /wheels
RUN pip install /wheels/*.whl . && rm -rf /src /wheels

# Run unprivileged; the worker keeps its local state in /var/lib/sluice (a volume).
RUN useradd --system --create-home --home-dir /home/sluice sluice \
    && mkdir -p /var/lib/sluice && chown sluice:sluice /var/lib/sluice
USER sluice
WORKDIR /home/sluice
ENV SLUICE_STATE_DIR=/var/lib/sluice

EXPOSE 8080
ENTRYPOINT ["sluice"]
CMD ["--help"]
