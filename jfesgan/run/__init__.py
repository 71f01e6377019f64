"""A run and its workdir: checkpoints, faults (preemption, non-finite values, the lock), the
metrics writer, reading a finished run, the rules for resuming and starting from another run,
command-line flags and host housekeeping.  Below the training core: nothing here knows a stage by
name."""
