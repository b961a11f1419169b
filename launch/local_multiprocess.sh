#!/usr/bin/env bash
# Runs N sld-train processes on this machine, each with D simulated CPU devices, joined by JAX's
# distributed runtime and gloo CPU collectives. This is how the tests exercise the multi-host code
# path without a cluster; on real hardware use tpu_pod.sh or slurm_gpu.sh.
#
# Usage: launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS [sld-train args...]
#   e.g. launch/local_multiprocess.sh 2 2 --config configs/digits/demo.py --workdir /tmp/mp_run
# Environment: PORT (coordinator port, default a free one), PYTHON (default: python), XLA_FLAGS
# (kept, with the device count set to DEVICES_PER_PROCESS).
# Each process's output goes to $LOG_DIR/process_<i>.log (default: the current directory's
# .multiprocess_logs); process 0 also echoes to the terminal. Exits non-zero if any process fails.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0"; exit 2
fi
NUM_PROCESSES=$1; DEVICES=$2; shift 2
PYTHON=${PYTHON:-python}
PORT=${PORT:-$($PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
LOG_DIR=${LOG_DIR:-.multiprocess_logs}
mkdir -p "$LOG_DIR"
export JAX_PLATFORMS=cpu
export JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo
# Any XLA_FLAGS of the caller are kept; only the simulated device count is replaced.
XLA_FLAGS=$(printf '%s' "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g')
export XLA_FLAGS="${XLA_FLAGS} --xla_force_host_platform_device_count=${DEVICES}"
pids=()
for ((i = 0; i < NUM_PROCESSES; i++)); do
  "$PYTHON" -m sld_jax.cli "$@" --coordinator_address="127.0.0.1:${PORT}" \
    --num_processes="${NUM_PROCESSES}" --process_id="${i}" > "$LOG_DIR/process_${i}.log" 2>&1 &
  pids+=($!)
done
# SIGINT/SIGTERM to this script go to every process: sld-train finishes its step, all processes
# save a checkpoint together, and each exits 0 (rerun the same command to resume).
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
# Wait for every process. If one fails, kill the others: they cannot finish (or save) without it
# and would otherwise wait at the next collective until the distributed runtime times out.
status=0
codes=()  # exit code of process i, once it has ended
while [ ${#codes[@]} -lt ${#pids[@]} ]; do
  for i in "${!pids[@]}"; do
    if [ -n "${codes[$i]:-}" ] || kill -0 "${pids[$i]}" 2>/dev/null; then continue; fi
    rc=0; wait "${pids[$i]}" || rc=$?
    codes[$i]=$rc
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
      echo "process $i exited with status $rc; see $LOG_DIR/process_${i}.log" >&2
      status=1
      kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
  done
  sleep 0.2 || true
done
cat "$LOG_DIR/process_0.log"
exit $status
