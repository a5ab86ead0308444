# pragma version ~=0.4.3
"""
@title Challenge draw
@license MIT
@notice The i-th challenged leaf of a provider in a period, exactly as
        contracts/spec/challenge.py (challenge_index).
@dev index = uint256(keccak256(abi.encode(seed, provider, period, i))) mod leaf_range. The
     modulo bias is below leaf_range / 2**256 (PDP, FilOzone/pdp Proofs.sol).
"""


@internal
@pure
def _challenge_index(
    seed: bytes32, provider: address, period: uint256, i: uint256, leaf_range: uint256
) -> uint256:
    """
    @notice Global leaf index of challenge `i`; `leaf_range` must be positive.
    """
    return convert(keccak256(abi_encode(seed, provider, period, i)), uint256) % leaf_range
