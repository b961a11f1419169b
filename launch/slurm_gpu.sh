#!/usr/bin/env bash
# Multi-node GPU training with Slurm: one process per node, all of the node's GPUs per process.
#
# Usage: sbatch --nodes=2 launch/slurm_gpu.sh --config configs/cifar100/sld/resnet32x4_resnet8x4.py --workdir /shared/runs/r32x4_r8x4
#
# The workdir must be on a file system that every node sees (checkpoints are written
# collectively by orbax). The first node is the coordinator; every node reads only its data shard.
#SBATCH --job-name=sld-train
#SBATCH --ntasks-per-node=1            # one JAX process per node; it drives all local GPUs
#SBATCH --gpus-per-node=8              # GPUs per node (adjust to your cluster)
#SBATCH --cpus-per-task=32             # host decode/augmentation threads (ImageNet pipeline)
#SBATCH --time=24:00:00                # wall-clock limit; on expiry Slurm sends SIGTERM first
#SBATCH --signal=TERM@120              # SIGTERM 120 s before the limit: sld-train checkpoints and exits 0
#SBATCH --requeue                      # requeue after preemption; the rerun resumes from the workdir
#SBATCH --output=sld-train-%j.log
set -euo pipefail
COORDINATOR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${PORT:-12355}
# srun starts one task per node; each task learns its id from SLURM_PROCID.
srun --kill-on-bad-exit=1 bash -c "
  sld-train \"\$@\" --coordinator_address=${COORDINATOR}:${PORT} \
    --num_processes=\${SLURM_NTASKS} --process_id=\${SLURM_PROCID}
" bash "$@"
