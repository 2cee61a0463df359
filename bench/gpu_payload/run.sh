#!/usr/bin/env bash
# Device driver for bench/bench_gpu.py and the tiny pipeline on a GPU machine that has no registry access.
# Staged by bench/gpu_payload/stage.sh into <repo>/.gpu/ (claim_t5/, nbs/, bench/, whl/, COMMIT); run as: cd .gpu && bash run.sh
# Env: BENCH_ARGS (e.g. --quick), PIPE_SET (config overrides for --set), PIPE_ARGS, BENCH_LIMIT / PIPE_LIMIT (seconds), SKIP_BENCH=1, SKIP_PIPE=1. Results go to $OUT.
set -u
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CLAIM_T5_COMMIT=$(cat COMMIT 2>/dev/null)
PY=${PY:-python3}
echo "== $(date -u) on $(hostname); $($PY -V)"
if [ "${NO_WHL:-0}" != 1 ] && ls whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site whl/*.whl >"$OUT/pip.log" 2>&1 \
    || { echo "wheel install failed:"; tail -20 "$OUT/pip.log"; }
  export PYTHONPATH=$PWD:/tmp/site
else export PYTHONPATH=$PWD; fi
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 && head -12 "$OUT/nvidia-smi.txt"
$PY - <<'PY' 2>&1 | tee "$OUT/versions.txt"
import importlib
for m in ("torch", "transformers", "peft", "accelerate", "datasets", "pyarrow", "fsspec", "huggingface_hub", "tokenizers",
          "papermill", "ipykernel", "fastcore", "rouge_score", "fastapi", "pandas", "numpy"):
    try: mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "?"))
    except Exception as e: print(m, "IMPORT FAILED:", type(e).__name__, e)
import torch; print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench_gpu.py ${BENCH_ARGS:-}"
  timeout "${BENCH_LIMIT:-300}" $PY bench/bench_gpu.py ${BENCH_ARGS:-} --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
  echo "bench exit: ${PIPESTATUS[0]}"
fi
if [ "${SKIP_PIPE:-0}" != 1 ]; then
  echo "== tiny pipeline (claim_t5_run --config tiny ${PIPE_SET:+--set '$PIPE_SET'} ${PIPE_ARGS:-}) with the GPU visible"
  RUN=/tmp/runs/tiny-gpu; rm -rf "$RUN"
  ( while true; do nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader >>"$OUT/gpu_apps.log" 2>&1; sleep 2; done ) &
  MON=$!
  t0=$(date +%s)
  timeout "${PIPE_LIMIT:-240}" $PY claim_t5_run.py \
    --config tiny --run_dir "$RUN" ${PIPE_SET:+--set "$PIPE_SET"} ${PIPE_ARGS:-} 2>&1 | tee "$OUT/pipeline.log"
  echo "pipeline exit: ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
  kill $MON 2>/dev/null
  sort -u "$OUT/gpu_apps.log" | head -20
  mkdir -p "$OUT/pipeline"
  cp "$RUN/config.yaml" "$OUT/pipeline/" 2>/dev/null
  for f in test_results.json history.json claim_t5_config.yaml; do cp "$RUN/model_training/fine_tuned_model/$f" "$OUT/pipeline/" 2>/dev/null; done
  [ -d "$RUN/notebooks" ] && cp "$RUN"/notebooks/*.ipynb "$OUT/pipeline/" 2>/dev/null
  ls -la "$OUT/pipeline"
fi
echo "== done $(date -u)"
