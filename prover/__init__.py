"""The storage provider daemon and its ``prover`` command."""
