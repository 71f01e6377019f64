#!/usr/bin/env bash
# SLURM: one task per node (or per GPU), every task runs the same program.
#   sbatch --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 launch/slurm.sh configs/joint.py --workdir /shared/runs/joint
# jax.distributed.initialize() reads SLURM's variables (SLURM_JOB_NODELIST, SLURM_NTASKS,
# SLURM_PROCID) and picks the first node as coordinator; the workdir must be on storage every node
# shares.  Each process feeds its slice of the global batch; process 0 writes logs and reports.
#SBATCH --job-name=jfesgan
#SBATCH --output=jfesgan-%j.log
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/joint.py}"
shift || true
exec srun python -m jfesgan.main --config "$config" --distributed "$@"
