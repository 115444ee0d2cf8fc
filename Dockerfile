# The CPU image: the dashboard (the default command) and the job worker (`python -m core worker`), configured by
# FEWSHOT_* settings only (README, "Settings"). The GPU image is Dockerfile.cuda; compose.yaml runs both roles.
#   docker build -t fewshot:cpu .
#   docker run -p 8501:8501 -v /path/to/omniglot:/data/omniglot:ro fewshot:cpu
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Requirements first, so that a code change does not reinstall them. PyTorch's CPU wheels: the same pins without
# the CUDA libraries (several GB) that PyPI's default Linux build brings.
COPY requirements.txt ./
COPY docker/install.sh docker/
RUN sh docker/install.sh --torch-index https://download.pytorch.org/whl/cpu

# The code is root's and readable by all (a file's mode comes from the build context: make it readable); only
# data/ (the SQLite default store, the job queue) and runs/ (train jobs' output) belong to the user.
COPY . .
RUN useradd --create-home --uid 10001 fewshot \
    && chmod -R a+rX /app \
    && mkdir -p /app/data /app/runs \
    && chown fewshot:fewshot /app/data /app/runs
USER fewshot

# Datasets are mounted, never baked in: -v /path/to/omniglot:/data/omniglot:ro
ENV FEWSHOT_OMNIGLOT_ROOT=/data/omniglot
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["python", "-m", "app", "--server.address=0.0.0.0", "--server.port=8501", "--browser.gatherUsageStats=false"]
