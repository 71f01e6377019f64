#!/usr/bin/env bash
# Run on every host of a multi-host slice (e.g. a TPU pod via
#   gcloud compute tpus tpu-vm ssh NAME --worker=all --command="cd jfesgan && launch/multihost.sh").
# jax.distributed.initialize() discovers the other hosts on Cloud TPU and SLURM; elsewhere set
# JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.  Every host runs the same
# program; each feeds its slice of the global batch (jfesgan/parallel.py) and process 0 writes
# logs.  The workdir must be on storage all hosts share (a GCS bucket or NFS) for checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/joint.py}"
shift || true
exec python -m jfesgan.main --config "$config" --distributed "$@"
