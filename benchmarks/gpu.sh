#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with a GPU (issue 17): the CUDA tests, the GPU speed
# table against cuDNN, and the demo on CUDA against the same demo on the CPU.
#   bash benchmarks/gpu.sh [reps]
set -euo pipefail
reps="${1:-5}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
python -m pytest -q -p no:cacheprovider tests/nn/test_cuda.py tests/nn/test_native.py
python benchmarks/speed.py --device cuda --reps "$reps"
start=$(date +%s.%N)
longshort demo --device cuda --no-progress --out /tmp/longshort-demo-cuda > /dev/null
echo "demo on CUDA: $(echo "$(date +%s.%N) - $start" | bc) s"
