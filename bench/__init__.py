"""Sluice's benchmark harness (`make bench`): every stage beside its raw baseline, in one run.

Each stage (door, stream, sink) is measured alone, next to the same work done
by the bare client library on the same broker or database in the same run, so
the ratio stays meaningful on a busy machine where absolute figures are noisy.
"""
