#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: create it, install sld_jax on every worker, run on all workers,
# copy the results back, and (optionally) delete the slice.
#
# Usage: launch/tpu_pod.sh NAME [sld-train args...]
#   e.g. ZONE=us-central2-b ACCELERATOR=v4-32 launch/tpu_pod.sh sld-pod \
#          --config configs/imagenet/sld/r34_r18.py --workdir /mnt/shared/runs/r34_r18
# Environment (all optional except a configured gcloud project):
#   ZONE          TPU zone (default us-central2-b)
#   ACCELERATOR   slice type, e.g. v4-8, v4-32, v5litepod-16 (default v4-32)
#   VERSION       TPU VM software version (default tpu-ubuntu2204-base)
#   SPOT=1        create a Spot (preemptible) slice; sld-train checkpoints on SIGTERM and resumes
#   REPO          git URL of sld_jax to install on the workers (default: copy this checkout)
#   RESULTS       local directory for copied-back results (default ./results/NAME)
#   DELETE=1      delete the slice at the end
# On a TPU pod, jax.distributed.initialize() detects the workers itself (--distributed).
# The workdir must be on a file system mounted at the same path on every worker (e.g. Filestore
# over NFS): all workers write each checkpoint together. gs:// workdirs are not supported yet.
set -euo pipefail
NAME=${1:?usage: launch/tpu_pod.sh NAME [sld-train args...]}; shift
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
VERSION=${VERSION:-tpu-ubuntu2204-base}
RESULTS=${RESULTS:-./results/$NAME}

create_flags=(
  --zone="$ZONE"                     # where the slice lives (must offer ACCELERATOR)
  --accelerator-type="$ACCELERATOR"  # chip generation and size, e.g. v4-32 = 16 chips on 4 hosts
  --version="$VERSION"               # the TPU VM image (OS + drivers)
)
[ "${SPOT:-0}" = 1 ] && create_flags+=(--spot)   # cheaper, can be preempted at any time
gcloud compute tpus tpu-vm describe "$NAME" --zone="$ZONE" >/dev/null 2>&1 \
  || gcloud compute tpus tpu-vm create "$NAME" "${create_flags[@]}"

ssh_all=(gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE"
         --worker=all)                 # run the same command on every host of the slice
if [ -n "${REPO:-}" ]; then
  "${ssh_all[@]}" --command="rm -rf ~/sld_jax && git clone --depth 1 '$REPO' ~/sld_jax"
else
  # scp the checkout to every worker (--worker=all also applies to scp).
  tar czf /tmp/sld_jax_src.tgz --exclude=.git --exclude='.venv*' --exclude=workdirs .
  gcloud compute tpus tpu-vm scp /tmp/sld_jax_src.tgz "$NAME":~/ --zone="$ZONE" --worker=all
  "${ssh_all[@]}" --command="rm -rf ~/sld_jax && mkdir ~/sld_jax && tar xzf ~/sld_jax_src.tgz -C ~/sld_jax"
fi
"${ssh_all[@]}" --command="cd ~/sld_jax && python3 -m venv ~/venv && . ~/venv/bin/activate \
  && pip install -q -e . && pip install -q 'jax[tpu]'"
# --distributed: jax.distributed.initialize() with the TPU metadata (no addresses needed).
quoted=$(printf '%q ' "$@")
"${ssh_all[@]}" --command="cd ~/sld_jax && . ~/venv/bin/activate && sld-train --distributed $quoted"

mkdir -p "$RESULTS"
# Worker 0 writes logs, summaries and plots; copy back the default workdirs/ (if used) from it.
gcloud compute tpus tpu-vm scp --recurse "$NAME":~/sld_jax/workdirs "$RESULTS" --zone="$ZONE" --worker=0 || true
[ "${DELETE:-0}" = 1 ] && gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --quiet
echo "results in $RESULTS"
