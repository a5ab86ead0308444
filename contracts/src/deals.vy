# pragma version ~=0.4.3
"""
@title Deals: EIP-712 proposals, acceptance, settlement
@license MIT
@notice A client signs a DealProposal (EIP-712); the provider accepts it on chain, which
        pulls the client's escrow (price * periods), locks the provider's collateral and
        appends the piece to the provider's data set from the next period on. Deals settle
        lazily, per deal, from the provider's proven and reported bitmaps (proving.vy):
        each proven period pays the provider, each missed period refunds its price to the
        client and slashes part of the collateral to the client (less the bounty already
        paid to a reporter). Termination or a declared loss forfeits the rest of the
        collateral to the client. contracts/spec/accounting.py is the reference.
@dev EIP-712 (https://eips.ethereum.org/EIPS/eip-712); signatures with a high s are
     rejected (EIP-2); nonces are single-use per client and may be random 256-bit values so
     that a client can propose to many providers in parallel.
"""
import clock
import registry
import proving
import events
import types

uses: clock
uses: registry
uses: proving

BPS: constant(uint256) = 10_000
PERIODS_PER_WORD: constant(uint256) = 256
# One settle call covers at most this many bitmap words of periods (1,024 periods); a deal
# unsettled for longer is settled in several calls.
MAX_SETTLE_WORDS: constant(uint256) = 4
MAX_BATCH: constant(uint256) = 64
SIGNATURE_LENGTH: constant(uint256) = 65
# secp256k1 n // 2 = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0:
# signatures with s above it are the malleable twins of valid ones (EIP-2).
SECP256K1_HALF_N: constant(uint256) = (
    57896044618658097711785492504343953926418782139537452191302581570759080747168
)

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
DEAL_PROPOSAL_TYPEHASH: constant(bytes32) = keccak256(
    "DealProposal(address client,address provider,bytes32 pieceRoot,uint64 pieceSize,"
    "uint256 pricePerPeriod,uint32 periods,uint256 collateral,uint256 nonce,uint64 expiryBlock)"
)
DOMAIN_NAME_HASH: constant(bytes32) = keccak256("Depot")
DOMAIN_VERSION_HASH: constant(bytes32) = keccak256("1")

max_piece_size: public(immutable(uint256))

deal_count: public(uint256)
deal: public(HashMap[uint256, types.Deal])
nonce_used: public(HashMap[address, HashMap[uint256, bool]])


@deploy
def __init__(_max_piece_size: uint256):
    """
    @param _max_piece_size Largest piece a deal may commit to, in bytes (at most 2**50,
           so that audit paths stay within 40 levels).
    """
    assert _max_piece_size > 0, "deals: zero max piece size"
    assert _max_piece_size <= types.LEAF_SIZE << types.MAX_PROOF_DEPTH, (
        "deals: max piece size beyond proof depth"
    )
    max_piece_size = _max_piece_size


# ---------------------------------------------------------------- external


@external
@nonreentrant
def accept_deal(proposal: types.DealProposal, signature: Bytes[SIGNATURE_LENGTH]) -> uint256:
    """
    @notice Accept a client's signed proposal; called by the proposal's provider.
    @dev Pulls price * periods from the client (allowance to the market needed), locks the
         collateral in the provider's stake (stake - locked - collateral >= min_stake). The
         deal runs over periods [start, end) with start = current period + 1.
    @param proposal The EIP-712 DealProposal.
    @param signature The client's 65-byte signature r || s || v over its EIP-712 digest.
    @return The new deal id (ids start at 1).
    """
    assert msg.sender == proposal.provider, "deals: caller is not the provider"
    assert block.number <= convert(proposal.expiryBlock, uint256), "deals: proposal expired"
    size: uint256 = convert(proposal.pieceSize, uint256)
    assert size > 0, "deals: empty piece"
    assert size <= max_piece_size, "deals: piece too large"
    assert proposal.periods > 0, "deals: zero periods"
    assert not self.nonce_used[proposal.client][proposal.nonce], "deals: nonce already used"
    assert self._recover(self._digest(proposal), signature) == proposal.client, (
        "deals: signature is not the client's"
    )
    self.nonce_used[proposal.client][proposal.nonce] = True

    proving._roll(msg.sender)
    registry._open_deal(msg.sender, proposal.collateral)
    start: uint256 = clock._current_period() + 1
    end: uint256 = start + convert(proposal.periods, uint256)
    deal_id: uint256 = self.deal_count + 1
    self.deal_count = deal_id
    epoch: uint256 = 0
    slot: uint256 = 0
    epoch, slot = proving._add_slot(
        msg.sender,
        proposal.pieceRoot,
        size,
        proving._bounty_per_miss(proposal.collateral),
        deal_id,
    )
    # settled_through stays 0, read as `start` (saves a storage write).
    self.deal[deal_id] = types.Deal(
        client=proposal.client,
        provider=msg.sender,
        price_per_period=proposal.pricePerPeriod,
        collateral=proposal.collateral,
        slashed=0,
        start=start,
        end=end,
        epoch=epoch,
        slot=slot,
        settled_through=0,
        loss_end=0,
        closed=False,
    )
    registry._pull(proposal.client, proposal.pricePerPeriod * convert(proposal.periods, uint256))
    log events.DealAccepted(
        deal_id=deal_id,
        client=proposal.client,
        provider=msg.sender,
        piece_root=proposal.pieceRoot,
        piece_size=size,
        price_per_period=proposal.pricePerPeriod,
        collateral=proposal.collateral,
        start=start,
        end=end,
        epoch=epoch,
        slot=slot,
        nonce=proposal.nonce,
    )
    return deal_id


@external
def cancel_nonce(nonce: uint256):
    """
    @notice Revoke a proposal the caller signed and that was not accepted yet.
    @param nonce The proposal's nonce.
    """
    assert not self.nonce_used[msg.sender][nonce], "deals: nonce already used"
    self.nonce_used[msg.sender][nonce] = True
    log events.NonceCancelled(client=msg.sender, nonce=nonce)


@external
@nonreentrant
def declare_loss(deal_id: uint256):
    """
    @notice The provider declares a deal's piece lost: the deal ends at the next period (the
            current one must still be proven), its slot leaves the challenge set, and its
            remaining collateral goes to the client at settlement.
    @param deal_id The deal.
    """
    d: types.Deal = self._existing(deal_id)
    assert msg.sender == d.provider, "deals: caller is not the provider"
    assert d.loss_end == 0, "deals: loss already declared"
    proving._roll(d.provider)
    loss_end: uint256 = clock._current_period() + 1
    assert loss_end < self._stop(d), "deals: deal ends before a loss would take effect"
    self.deal[deal_id].loss_end = loss_end
    assert proving._retire(d.provider, d.epoch, d.slot, proving._bounty_per_miss(d.collateral)), (
        "proving: too many retirements this period"
    )
    log events.LossDeclared(deal_id=deal_id, provider=d.provider, end_period=loss_end)


@external
@nonreentrant
def settle(deal_id: uint256):
    """
    @notice Pay out a deal's closed periods, and close it once it has ended.
    @dev A period is settled once its report window has closed (two periods after it
         started). Also retires the deal's slot once its last challenged period has come.
    @param deal_id The deal.
    """
    assert self._settle(deal_id), "deals: nothing to settle"


@external
@nonreentrant
def settle_many(deal_ids: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice `settle` for many deals; deals with nothing to settle are skipped.
    @param deal_ids Up to 64 deal ids.
    @return How many deals made progress.
    """
    progressed: uint256 = 0
    for deal_id: uint256 in deal_ids:
        if self._settle(deal_id):
            progressed += 1
    return progressed


@external
@view
def deal_stop(deal_id: uint256) -> uint256:
    """
    @notice The period a deal stops at: its end, or earlier after termination or a loss.
    @param deal_id The deal.
    @return The first period the deal no longer covers.
    """
    return self._stop(self._existing(deal_id))


@external
@view
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator {name "Depot", version "1", chainId, this market}.
    @return The separator.
    """
    return self._domain_separator()


@external
@view
def proposal_digest(proposal: types.DealProposal) -> bytes32:
    """
    @notice The EIP-712 digest a client signs for `proposal`.
    @param proposal The proposal.
    @return keccak256(0x1901 || domain separator || struct hash).
    """
    return self._digest(proposal)


# ---------------------------------------------------------------- internal


@internal
@view
def _existing(deal_id: uint256) -> types.Deal:
    """
    @notice The deal, or revert if it does not exist.
    """
    d: types.Deal = self.deal[deal_id]
    assert d.provider != empty(address), "deals: unknown deal"
    return d


@internal
@view
def _stop(d: types.Deal) -> uint256:
    """
    @notice First period the deal no longer covers: min(end, epoch end, loss end).
    """
    stop: uint256 = d.end
    epoch_end: uint256 = proving.epoch_end[d.provider][d.epoch]
    if epoch_end != 0:
        stop = min(stop, epoch_end)
    if d.loss_end != 0:
        stop = min(stop, d.loss_end)
    return stop


@internal
def _settle(deal_id: uint256) -> bool:
    """
    @notice Settle what can be settled of one deal; returns whether anything changed.
    """
    d: types.Deal = self._existing(deal_id)
    proving._roll(d.provider)
    current: uint256 = clock._current_period()
    stop: uint256 = self._stop(d)
    progressed: bool = False
    if not d.closed:
        progressed = self._pay_out(deal_id, d, current, stop)
    # Retire the slot once the deal's last challenged period (stop - 1) has come.
    if stop <= current + 1 and proving._slot_live(d.provider, d.epoch, d.slot):
        if proving._retire(d.provider, d.epoch, d.slot, proving._bounty_per_miss(d.collateral)):
            progressed = True
    return progressed


@internal
def _pay_out(deal_id: uint256, d: types.Deal, current: uint256, stop: uint256) -> bool:
    """
    @notice The money part of `_settle` (contracts/spec/accounting.py, settle_deal).
    """
    first: uint256 = max(d.settled_through, d.start)
    # Periods before `closed` have had their proof and report windows close.
    closed: uint256 = 0
    if current > 0:
        closed = current - 1
    last: uint256 = min(
        min(stop, closed), (first // PERIODS_PER_WORD + MAX_SETTLE_WORDS) * PERIODS_PER_WORD
    )
    final: bool = stop <= closed and max(first, last) >= stop
    if last <= first and not final:
        return False

    proven: uint256 = 0
    reported: uint256 = 0
    missed: uint256 = 0
    slashed: uint256 = 0
    compensation: uint256 = 0
    if last > first:
        proven = proving._count_bits(d.provider, first, last, False)
        reported = proving._count_bits(d.provider, first, last, True)
        missed = last - first - proven
        slash_per_miss: uint256 = d.collateral * proving.miss_slash_bps // BPS
        slashed = min(missed * slash_per_miss, d.collateral - d.slashed)
        # The reporters were already paid their share out of the stake.
        bounties: uint256 = min(reported * proving._bounty_per_miss(d.collateral), slashed)
        compensation = slashed - bounties
        self.deal[deal_id].settled_through = last
    provider_paid: uint256 = proven * d.price_per_period
    client_refund: uint256 = missed * d.price_per_period
    release: uint256 = slashed
    if final:
        settled: uint256 = max(first, last)
        client_refund += (d.end - settled) * d.price_per_period
        remaining: uint256 = d.collateral - d.slashed - slashed
        if stop < d.end:
            # Terminated or lost: the rest of the collateral is forfeit to the client.
            slashed += remaining
            compensation += remaining
        release += remaining
        self.deal[deal_id].closed = True
        registry._close_deal(d.provider)
    self.deal[deal_id].slashed = d.slashed + slashed
    registry._release(d.provider, release)
    client_compensation: uint256 = registry._take_stake(d.provider, compensation)
    registry._pay(d.provider, provider_paid)
    registry._pay(d.client, client_refund + client_compensation)
    log events.DealSettled(
        deal_id=deal_id,
        from_period=first,
        to_period=max(first, last),
        proven=proven,
        missed=missed,
        reported=reported,
        provider_paid=provider_paid,
        client_refund=client_refund,
        client_compensation=client_compensation,
        slashed=slashed,
        final=final,
    )
    return True


@internal
@view
def _domain_separator() -> bytes32:
    """
    @notice EIP-712 domain separator, computed per call so that it follows the chain id.
    """
    return keccak256(
        abi_encode(
            EIP712_DOMAIN_TYPEHASH, DOMAIN_NAME_HASH, DOMAIN_VERSION_HASH, chain.id, self
        )
    )


@internal
@view
def _digest(p: types.DealProposal) -> bytes32:
    """
    @notice EIP-712 digest of a proposal: keccak256(0x1901 || domain || hashStruct).
    """
    struct_hash: bytes32 = keccak256(
        abi_encode(
            DEAL_PROPOSAL_TYPEHASH,
            p.client,
            p.provider,
            p.pieceRoot,
            p.pieceSize,
            p.pricePerPeriod,
            p.periods,
            p.collateral,
            p.nonce,
            p.expiryBlock,
        )
    )
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[SIGNATURE_LENGTH]) -> address:
    """
    @notice The signer of `digest`, rejecting malformed and malleable signatures (EIP-2).
    """
    assert len(signature) == SIGNATURE_LENGTH, "deals: signature must be 65 bytes"
    r: uint256 = convert(extract32(signature, 0), uint256)
    s: uint256 = convert(extract32(signature, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert s <= SECP256K1_HALF_N, "deals: signature s too high (EIP-2)"
    assert v == 27 or v == 28, "deals: signature v must be 27 or 28"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address), "deals: invalid signature"
    return signer
