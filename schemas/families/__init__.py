"""Validators of the seed-compatible API families (one module per family, pure, no I/O)."""
