"""`python -m bench`: run the whole benchmark and write its results."""

from bench.run import main

main()
