# The dashboard and CLI in a container. CPU by default; on a CUDA host run with --gpus all (torch picks it up).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# Omniglot and other datasets are mounted, never baked in: -v /path/to/omniglot:/data/omniglot
ENV FEWSHOT_OMNIGLOT_ROOT=/data/omniglot
EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health')"
CMD ["python", "-m", "app", "--server.address=0.0.0.0", "--server.port=8501", "--browser.gatherUsageStats=false"]
