#!/bin/sh
# Installs the project's Python requirements into the `python` first on PATH (the image's, or a venv's).
#
#   sh docker/install.sh --torch-index URL    torch and torchvision from PyTorch's wheel index URL (the CPU image:
#                                             https://download.pytorch.org/whl/cpu, no multi-GB CUDA libraries),
#                                             at requirements.txt's pins, then everything else from requirements.txt
#   sh docker/install.sh                      everything from requirements.txt (PyPI's torch build: the CUDA one)
#
# Dockerfile, Dockerfile.cuda and bench/prove_install.sh all run this script, so the images' install and the
# proof of it cannot drift apart. The pins stay in requirements.txt only: they are read from it here.
set -eu
requirements=requirements.txt
torch_index=
while [ $# -gt 0 ]; do
    case "$1" in
        --torch-index) torch_index=${2:?--torch-index needs a URL}; shift 2 ;;
        --requirements) requirements=${2:?--requirements needs a file}; shift 2 ;;
        *) echo "install.sh: unknown argument $1 (use --torch-index URL, --requirements FILE)" >&2; exit 2 ;;
    esac
done
[ -f "$requirements" ] || { echo "install.sh: $requirements not found" >&2; exit 2; }
if [ -n "$torch_index" ]; then
    # `torch==2.14.1` also matches the index's local build `2.14.1+cpu`, so the second install keeps it.
    pins=$(sed -n -E 's/^(torch|torchvision)==([^[:space:]#]+).*/\1==\2/p' "$requirements")
    [ -n "$pins" ] || { echo "install.sh: no torch==/torchvision== pins in $requirements" >&2; exit 2; }
    # shellcheck disable=SC2086  # one word per pin
    python -m pip install --no-cache-dir --index-url "$torch_index" $pins
fi
python -m pip install --no-cache-dir -r "$requirements"
python -c "import torch, torchvision; print('installed torch', torch.__version__, 'torchvision', torchvision.__version__)"
