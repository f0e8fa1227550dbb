#!/usr/bin/env bash
# The GPU check: the conformance, fast-path equivalence and torch-namesake suites on CUDA, then
# benchmarks/ops.py on CUDA. Run from the repository root: `make gpu-check` (or bash benchmarks/gpu_check.sh).
# PY overrides the interpreter (default .venv/bin/python); extra arguments go to benchmarks/ops.py.
set -euo pipefail
PY="${PY:-.venv/bin/python}"
"$PY" - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu-check: CUDA is not available (torch %s); nothing was run" % torch.__version__)
print("gpu-check on", torch.cuda.get_device_name(), "torch", torch.__version__)
PYEOF
"$PY" -m pytest -q -p no:cacheprovider --device cuda \
    tests/test_conformance.py tests/test_fast_equivalence.py tests/nn/test_torch_namesakes.py
"$PY" benchmarks/ops.py --device cuda "$@"
