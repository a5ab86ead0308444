"""The ledger: Vyper contracts (``src/``), their Python reference (``spec/``) and the one
Python module that knows their ABIs and addresses (``chain``)."""
