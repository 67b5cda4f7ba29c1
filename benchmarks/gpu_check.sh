#!/usr/bin/env bash
# The prepared GPU check: CUDA correctness (tests/gpu, with pytest), the cifar10 and imagenet
# presets' step speed (benchmarks/gpu_check.py: fp32 / bf16 / channels_last / torch.compile,
# ours vs lightly) and memory, on one GPU with synthetic data, in under 9 minutes. Needs python3
# with torch, torchvision and pytest; not Ray or MLflow. lightly is optional (carried as a
# wheel, see the README).
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
# Correctness first (skipped without CUDA); numbers in the XML's `result` properties.
if "$python" -c "import pytest" 2>/dev/null; then
    timeout 150 "$python" -m pytest -q -p no:cacheprovider tests/gpu \
        --junitxml="$out_dir/gpu_tests.xml" || status=$?
else
    echo "tests/gpu: NOT RUN (no pytest for $python: carry its wheel as lightly's)"; status=1
fi
timeout 310 "$python" benchmarks/gpu_check.py --out "$out_dir/gpu_check.json" "$@" || status=$?
# Where the step's time goes (bf16 + channels_last), one table per preset.
if [[ " $* " != *" --dry-run "* ]]; then
    for preset in "cifar10 --batch 256" "imagenet --batch 256 --source 256"; do
        name="${preset%% *}"
        PYTHONPATH="$PWD/benchmarks:$PYTHONPATH" timeout 45 "$python" benchmarks/profile_step.py \
            --preset $preset --amp --channels-last \
            > "$out_dir/profile_$name.txt" 2>&1 || echo "profile $name: exit $?"
        head -8 "$out_dir/profile_$name.txt"
    done
fi
if [ -f benchmarks/gpu_decode_check.py ]; then
    timeout 60 "$python" benchmarks/gpu_decode_check.py || echo "gpu_decode_check: exit $?"
else
    echo "gpu_decode_check: skipped (benchmarks/gpu_decode_check.py is not here)"
fi
exit "$status"
