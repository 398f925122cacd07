"""Training infrastructure shared by the stages (pretext/, finetune/): the Accelerate loop, checkpoints, state
files, the run-directory lock, logging, optimizer, lr schedule, prefetch and allocator settings. It imports no
stage and no recipe (tests/test_architecture.py)."""
