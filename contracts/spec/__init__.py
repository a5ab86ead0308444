"""
Consensus-critical rules written once, as readable functions: the Merkle commitment, the
challenge draw, the period schedule, deal hashing and payment arithmetic. The contracts in
``contracts/src`` must agree with these byte for byte (tests/vectors).

This package depends on nothing but the standard library and ``eth_hash``, so that every
other part of Depot (node, prover, market, auditor) can import it.
"""
