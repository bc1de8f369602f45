#!/usr/bin/env bash
# Every GPU measurement of issues 10 and 17 in one call, for a GPU that is lent for minutes:
#   1. benchmarks/bench_gpu.py on the paper config (training, sampling and embedding throughput);
#   2. config/sim_science.yaml's `main` run trained through the real training command, timed (the
#      demo sky's science budget in GPU minutes);
#   3. a paper-size model (config/paper.yaml on the synthetic sky, one GPU) trained through the same
#      command for about PAPER_TRAIN_S seconds, its step count taken from step 1's bf16 training rate;
#   4. benchmarks/sampler_study.py on that model (Euler-250 against the fast samplers);
#   5. benchmarks/oracle_conditioning.py (issue 10's PSF question): the demo decoder handed the true
#      PSF and sky sigma, trained for ORACLE_S seconds at batch ORACLE_BATCH from device-resident
#      batches, then the same with cross-attention at every UNet level (48, 24 and 12 px); each
#      prints the gain per sd of PSF and of sky-noise mismatch. A PSF slope above 0 with its
#      interval is what no CPU budget has shown (benchmarks/RESULTS.md, "What the decoder uses").
# Each step has its own time limit, so one that fails or overruns leaves the others' numbers.
# PARTS (environment, default "1 2 3 4 5") picks the steps to run, e.g. PARTS=5 for the oracles alone.
#
# Usage: benchmarks/gpu_session.sh DATA OUT [--quick]
#   DATA: a preprocessed dataset (results/sim); OUT: where the logs, tables and metrics go.
#   --quick: tiny sizes on a CPU (the paper-size model with a narrow UNet), to check the script end
#     to end; its numbers mean nothing.
# Time limits (seconds, environment): BENCH_S (300), SCIENCE_S (200), PAPER_TRAIN_S (150; the training's
# limit is 90 s more, for start-up, validation and the checkpoint), STUDY_S (150), ORACLE_S (150 of
# training per oracle; each one's limit is 120 s more, for the rate probe and the scoring).
# ORACLE_BATCH: the oracles' batch (256; the CPU oracles trained at the demo's 32).
set -uo pipefail

DATA=$1
OUT=$2
QUICK=${3:-}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"

section() { echo; echo "=== $* ($(date -u +%H:%M:%S) UTC)"; }

# The config of one training, as JSON: FILES merged as the workflow merges them, then OVERRIDES.
train_config() {
    "$PY" - "$@" <<'EOF'
import json, sys
from whatsreal.config import deep_merge, effective_config
files, overrides = sys.argv[1:-1], json.loads(sys.argv[-1])
print(json.dumps(deep_merge(effective_config(files, check_paths=False), overrides)))
EOF
}

# Train run `main` of a config (JSON) into $WORK/NAME; print its exit status and wall time.
train_run() {
    local name=$1 config=$2 limit=$3 run=$WORK/$1/runs/main
    local start=$(date +%s.%N)
    # Its log goes to $OUT; the copy on stderr is kept out of this script's output unless it fails.
    timeout -k 30 "$limit" "$PY" -m whatsreal.train --run main --config-json "$config" --data-dir "$DATA" \
        --run-dir "$run" --model "$run/model.ckpt" --log "$OUT/train_$name.log" 2>"$WORK/$name.stderr"
    local rc=$? end=$(date +%s.%N)
    [ "$rc" = 0 ] || tail -n 20 "$WORK/$name.stderr"
    [ -f "$run/metrics.csv" ] && cp "$run/metrics.csv" "$OUT/metrics_$name.csv"
    echo "train $name: exit $rc, wall $(awk "BEGIN {printf \"%.1f\", $end - $start}") s"
}

section environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
git log -1 --format='commit %H' 2>/dev/null || true

PARTS=" ${PARTS:-1 2 3 4 5} "
part() { [[ "$PARTS" == *" $1 "* ]]; }

if part 1; then
    section "1. bench_gpu.py, config/paper.yaml"
    timeout -k 10 "${BENCH_S:-300}" "$PY" benchmarks/bench_gpu.py --data "$DATA" $QUICK | tee "$OUT/bench_gpu.txt"
fi

if part 2; then
    section "2. config/sim_science.yaml, run main, timed"
    if [ -n "$QUICK" ]; then
        SCIENCE=$(train_config config/config.yaml config/sim_science.yaml '{"train": {"progress_bar": false, "max_steps": 2, "val_every_steps": 2, "checkpoint_every_steps": 2, "num_workers": 0}}')
    else
        SCIENCE=$(train_config config/config.yaml config/sim_science.yaml '{"train": {"progress_bar": false, "devices": 1, "num_workers": 8}}')
    fi
    train_run sim_science "$SCIENCE" "${SCIENCE_S:-200}"
fi

if part 3; then
    section "3. a paper-size model trained for the sampler study"
    if [ -n "$QUICK" ]; then
        PAPER=$(train_config config/paper.yaml '{"dataset": {"source": "synthetic"}, "model": {"unet": {"block_out_channels": [32, 32, 32, 32]}}, "train": {"progress_bar": false, "accelerator": "cpu", "devices": 1, "precision": "32-true", "batch_size": 4, "max_steps": 2, "val_every_steps": 2, "checkpoint_every_steps": 2, "num_workers": 0}}')
    else
        # bf16 training rate (device-resident batches) from step 1, else a guess of 500 samples/s.
        RATE=$(awk '/bf16 autocast +resident/ {print $4}' "$OUT/bench_gpu.txt" 2>/dev/null)
        STEPS=$("$PY" -c "print(max(200, int(float('${RATE:-500}') * ${PAPER_TRAIN_S:-150} / 64 / 1.5) // 100 * 100))")
        echo "training $STEPS steps of batch 64 (measured rate ${RATE:-unknown} samples/s)"
        PAPER=$(train_config config/paper.yaml "{\"dataset\": {\"source\": \"synthetic\"}, \"train\": {\"progress_bar\": false, \"devices\": 1, \"max_steps\": $STEPS, \"val_every_steps\": $((STEPS / 2)), \"checkpoint_every_steps\": $STEPS, \"num_workers\": 8}}")
    fi
    train_run paper "$PAPER" $((${PAPER_TRAIN_S:-150} + 90))
fi

if part 4; then
    section "4. sampler study on the paper-size model"
    if [ -f "$WORK/paper/runs/main/model.ckpt" ]; then
        timeout -k 10 "${STUDY_S:-150}" "$PY" benchmarks/sampler_study.py --model "$WORK/paper/runs/main/model.ckpt" --data "$DATA" \
            --n-galaxies 24 --n-samples 8 --candidates heun-4 heun-6 heun-8 heun-10 heun-12 midpoint-4 midpoint-6 \
            midpoint-8 midpoint-12 euler-25 euler-50 euler-100 dopri5-1e-2 dopri5-5e-3 --csv "$OUT/sampler_paper.csv" $QUICK 2>&1 | tee "$OUT/sampler_paper.txt" | grep -v "anchored"
    else
        echo "no trained paper-size model: sampler study skipped"
    fi
fi

if part 5; then
    # The demo decoder with oracle instrument tokens (true PSF FWHM and sky sigma), trained to a
    # time budget; then with cross-attention at every level, which is too slow on a CPU (26 s a step).
    echo '{"model": {"unet": {"down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}}}' > "$WORK/attn_all.yaml"
    if [ -n "$QUICK" ]; then
        BUDGET=(--steps 2 --draws 1 --partners 2 --batch-size 4)
    else
        BUDGET=(--seconds "${ORACLE_S:-150}" --batch-size "${ORACLE_BATCH:-256}")
    fi
    for variant in demo attn_all; do
        section "5. oracle conditioning, $variant UNet"
        CONFIGS=(config/config.yaml)
        [ "$variant" = attn_all ] && CONFIGS+=("$WORK/attn_all.yaml")
        timeout -k 10 $((${ORACLE_S:-150} + 120)) "$PY" benchmarks/oracle_conditioning.py --data "$DATA" \
            --config "${CONFIGS[@]}" --features both "${BUDGET[@]}" --save "$OUT/oracle_$variant.pt" 2>&1 \
            | tee "$OUT/oracle_$variant.txt" | grep -v "^step [1-9]"
    done
fi

section done
