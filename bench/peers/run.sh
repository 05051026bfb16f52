#!/usr/bin/env bash
# clrec against RecBole and LightFM on one data set, same split, same machine, same evaluator.
#
#   bash bench/peers/run.sh DATASET|CONFIG [--split random|predefined|cold-item]
#       [--time-cap MIN] [--threads N] [--out DIR] [--skip NAME,...] [--only NAME,...]
#       [--no-append]
#
# DATASET names a preset in configs/ (ml-latest-small, ml-1m, amazon-office, amazon-scientific,
# gowalla); CONFIG is any run config file (e.g. one for your own data, `clrec init-config`),
# named in the table by its file name. --only keeps just the models named (the others are
# skipped). --split random overrides the preset's split with a per-user random 8:1:1 (seed
# 2020); --split cold-item uses configs/DATASET-cold.yaml; without --split the preset's own split
# is used. Steps, each model in its own process under measure.py (wall time, peak RSS):
#   1. the peers' virtual environments (setup_envs.sh; never the project's), only those
#      that a model left after --skip needs;
#   2. clrec's models: the preset's clrec model, then EASE, BPR-MF and LightGCN with clrec's
#      defaults, all on the same split (the clrec run's split is the reference);
#   3. that split exported for RecBole (benchmark_filename) and LightFM (clrec data export);
#   4. RecBole 1.2.1: BPR, LightGCN, EASE, SGL, NCL with their published defaults, SimGCL and
#      XSimGCL (recbole_gcl.py); skipped on a cold-item split, where ID-only models have nothing
#      to score an unseen item with; LightFM's WARP hybrid (words / tags as item features);
#   5. table.py scores every model's rankings with clrec's evaluator and appends the table to
#      BENCHMARKS.md.
# --time-cap MIN caps every trained model's training (clrec: model.params.time_limit_minutes;
# RecBole: checked before each epoch; LightFM: between epochs); the best validated state so far
# is what gets tested, and a capped model is marked in the table. Every process gets --threads
# torch / BLAS threads (default 1), so per-epoch times compare like with like. A model already
# measured in DIR (default bench/peers/out/DATASET-SPLIT) is kept: an interrupted run resumes.
# --skip leaves out models by name (e.g. clrec-ease,recbole-EASE where items² does not fit).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

usage() { sed -n '4,6p' "$0" | sed 's/^# //' >&2; exit 2; }
[ $# -ge 1 ] || usage
command="bash bench/peers/run.sh $*"
dataset="$1"; shift
split="" cap="" threads=1 out="" append=1 skip="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --split) split="$2"; shift 2 ;;
    --time-cap) cap="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip) skip=",$2,"; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    --no-append) append=0; shift ;;
    *) usage ;;
  esac
done

config="configs/$dataset.yaml"
if [ -f "$dataset" ]; then  # a run config file rather than a preset name
  config="$dataset"; dataset="$(basename "${dataset%.*}")"
fi
overrides=()
case "$split" in
  "") split_label="preset" ;;
  random) split_label="random 8:1:1"
    overrides+=(--set split.scheme=random --set "split.ratios=[0.8,0.1,0.1]" --set split.seed=2020) ;;
  cold-item) split_label="cold-item"
    [ "$config" = "configs/$dataset.yaml" ] && config="configs/$dataset-cold.yaml" ;;
  predefined) split_label="predefined"; overrides+=(--set split.scheme=predefined) ;;
  *) echo "unknown --split $split (random, predefined, cold-item)" >&2; exit 2 ;;
esac
[ -f "$config" ] || { echo "no preset $config" >&2; exit 2; }
out="${out:-bench/peers/out/$dataset-${split:-preset}}"
mkdir -p "$out"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
python=".venv/bin/python"
clrec=".venv/bin/clrec"
recbole="$here/.venvs/recbole/bin/python"
lightfm="$here/.venvs/lightfm/bin/python"
cap_args=()
[ -n "$cap" ] && cap_args=(--time-cap "$cap")

wanted() {  # wanted NAME...: is any of these models left after --skip / --only?
  local name
  for name in "$@"; do
    [[ "$skip" == *",$name,"* ]] && continue
    [ -n "$only" ] && [[ "$only" != *",$name,"* ]] && continue
    return 0
  done
  return 1
}

measured() {  # measured NAME COMMAND... : run COMMAND as model NAME, its log in NAME/log.txt
  local name="$1"; shift
  wanted "$name" || { echo "== $name: skipped (--skip / --only)"; return; }
  if grep -qs '"status": 0' "$out/$name/measure.json"; then
    echo "== $name: measured already, kept (delete $out/$name to rerun it)"; return
  fi
  mkdir -p "$out/$name"
  echo "== $name ($(date +%H:%M:%S))"
  if "$python" "$here/measure.py" "$out/$name/measure.json" -- "$@" >"$out/$name/log.txt" 2>&1; then
    tail -n 1 "$out/$name/log.txt"
  else
    echo "   failed: see $out/$name/log.txt"; tail -n 3 "$out/$name/log.txt"
  fi
}

recbole_models=(BPR LightGCN EASE SGL NCL SimGCL XSimGCL)
[ "$split" != "cold-item" ] && wanted "${recbole_models[@]/#/recbole-}" && bash "$here/setup_envs.sh" recbole
wanted lightfm && bash "$here/setup_envs.sh" lightfm

clrec_train() {  # clrec_train MODEL [--set ...]: the cap goes last, after any params reset
  local model="$1"; shift
  local args=("${overrides[@]}" --set evaluation.progress=false "$@")
  [ -n "$cap" ] && [ "$model" != ease ] && args+=(--set "model.params.time_limit_minutes=$cap")
  measured "clrec-$model" "$clrec" train "$config" "${args[@]}" --out "$out/clrec-$model"
}
clrec_train clrec
for model in ease bpr lightgcn; do
  clrec_train "$model" --set "model.name=$model" --set "model.params={}"
done

# the reference split: clrec-clrec's, else the first clrec run measured (--only / --skip)
reference="$out/clrec-clrec"
[ -d "$reference/split" ] || reference="$(ls -d "$out"/clrec-*/ 2>/dev/null | head -n 1)"
reference="${reference%/}"
[ -n "$reference" ] && [ -d "$reference/split" ] \
  || { echo "no clrec run in $out to take the split from (keep one clrec model)" >&2; exit 2; }
"$clrec" data export "$reference" --format recbole --out "$out/export" >/dev/null
"$clrec" data export "$reference" --format lightfm --out "$out/export/lightfm" >/dev/null
name="$(ls "$out/export" | grep -v '^lightfm$' | head -n 1)"

if [ "$split" != "cold-item" ]; then
  for model in "${recbole_models[@]}"; do
    measured "recbole-$model" "$recbole" "$here/recbole_run.py" "$out/export/$name" \
      --model "$model" --out "$out/recbole-$model" --threads "$threads" "${cap_args[@]}"
  done
fi
measured lightfm "$lightfm" "$here/lightfm_run.py" "$out/export/lightfm" --out "$out/lightfm" \
  --threads "$threads" "${cap_args[@]}"

"$python" - "$out" "$dataset" "$split_label" "${cap:-none}" "$threads" "$command" <<'EOF'
import datetime, json, os, platform, subprocess, sys
out, dataset, split, cap, threads, command = sys.argv[1:]
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:  # a peer environment that no model of this run needed
        return "not run"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
versions = {
    "clrec": run(".venv/bin/python", "-c", "import clrec; print(clrec.__version__)"),
    "torch": run(".venv/bin/python", "-c", "import torch; print(torch.__version__)"),
    "RecBole": run("bench/peers/.venvs/recbole/bin/python", "-c", "import recbole; print(recbole.__version__)"),
    "LightFM": run("bench/peers/.venvs/lightfm/bin/python", "-c", "import lightfm; print(lightfm.__version__)"),
}
meta = {
    "dataset": dataset, "split": split, "time_cap": cap, "threads": threads,
    "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()}",
    "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    "commit": run("git", "rev-parse", "--short", "HEAD") + ("+dirty" if run("git", "status", "--porcelain", "--untracked-files=no") else ""),
    "date": datetime.date.today().isoformat(),
    "command": command,
}
json.dump(meta, open(f"{out}/meta.json", "w"), indent=2)
EOF
table_args=()
[ "$append" = 1 ] && table_args=(--append BENCHMARKS.md)
"$python" "$here/table.py" "$out" --reference "$reference" "${table_args[@]}"
