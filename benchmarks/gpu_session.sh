#!/usr/bin/env bash
# Every GPU check of napari-unet in one command, for a CUDA machine whose python3 has torch, numpy,
# scipy, scikit-image, tifffile, safetensors and pytest but no network (e.g. the lent H100/H200).
#
# Prepare once, on a machine with pip (monai is only needed for the MONAI comparison):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl monai==1.6.1
# Then run it from the repository root there (carrying .whl): bash benchmarks/gpu_session.sh
# Logs go to $OUT (or ./gpu-logs): the CUDA tests, the tiled-inference benchmark (napari-unet eager and
# compiled vs MONAI vs the bare network, 8192x8192) and the 20000x20000 memory benchmark.
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -p no:xvfb -k "cuda" tests/core 2>&1 | tee "$out/cuda-tests.txt"
python3 benchmarks/tiled_inference.py --device cuda 2>&1 | tee "$out/tiled-cuda.txt"
python3 benchmarks/large_image_memory.py --device cuda 2>&1 | tee "$out/memory-cuda.txt"
