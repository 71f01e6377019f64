#!/usr/bin/env bash
# Run on every host of a multi-host slice (e.g. a TPU pod via
#   gcloud compute tpus tpu-vm ssh NAME --worker=all --command="cd jfesgan && launch/multihost.sh").
# jax.distributed.initialize() discovers the other hosts on Cloud TPU (launch/slurm.sh for SLURM);
# elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (jfesgan/main.py
# passes them on), e.g. two processes on this machine, CPU devices talking over gloo:
#   for i in 0 1; do JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2 \
#     JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=$i \
#     launch/multihost.sh configs/tiny.py --workdir runs/two & done; wait
# Every host runs the same
# program; each feeds its slice of the global batch (jfesgan/parallel.py) and process 0 writes
# logs.  The workdir must be on storage all hosts share (a GCS bucket or NFS) for checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/joint.py}"
shift || true
exec python -m jfesgan.main --config "$config" --distributed "$@"
