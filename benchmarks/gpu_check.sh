#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): CUDA correctness, the cifar10 and
# imagenet presets' step speed (fp32 / bf16 / channels_last / torch.compile, ours vs lightly)
# and memory, on one GPU with synthetic data, in under 8 minutes. Needs python3 with torch and
# torchvision; not Ray or MLflow. lightly is optional (carried as a wheel, see the README).
#
#   bash benchmarks/gpu_check.sh              # results in $OUT/gpu_check.json (else ./)
#   bash benchmarks/gpu_check.sh --dry-run    # tiny sizes on the CPU: tests the script
set -u
cd "$(dirname "$0")/.."
out_dir="${OUT:-.}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
status=0
timeout 420 "$python" benchmarks/gpu_check.py --out "$out_dir/gpu_check.json" "$@" || status=$?
if [ -f benchmarks/gpu_decode_check.py ]; then
    timeout 60 "$python" benchmarks/gpu_decode_check.py || echo "gpu_decode_check: exit $?"
else
    echo "gpu_decode_check: skipped (benchmarks/gpu_decode_check.py is not here)"
fi
exit "$status"
