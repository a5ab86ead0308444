"""
The auditor: independent verification of the storage market (docs/auditor.md).

It indexes the ledger's events into a database (``indexer``), re-verifies every proof
transaction from its calldata with the project's own reference code (``checker``,
``calldata``), reports missed proofs for their bounty (``bounty``), fetches random chunks
of live deals from their providers (``retrieval``), and turns all of it into per-provider
reputation (``reputation``) and a report (``report``, ``api``). ``auditor`` is the command
(``cli``).
"""
