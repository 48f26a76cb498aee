"""`python -m edgeprof.cli` runs the command line."""

from edgeprof.cli import main

main()
