"""`python -m urrlkit.experiments.replica linear-eval RECIPE RUN_DIR [--untrained] [--labels N] [--set K=V ...]`:
the replica's linear-evaluation step (run_replica runs it as a subprocess)."""

import sys

from urrlkit.experiments.replica.run import linear_eval_main

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "linear-eval":
        linear_eval_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m urrlkit.experiments.replica linear-eval RECIPE RUN_DIR [--set K=V ...]")
