"""`python -m medsight`: the same as the `medsight` command (what torchrun -m medsight runs)."""

from medsight.cli import main

main()
