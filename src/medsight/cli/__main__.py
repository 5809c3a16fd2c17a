"""`python -m medsight.cli`: the same as the `medsight` command."""

from medsight.cli import main

main()
