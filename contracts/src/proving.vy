# pragma version ~=0.4.3
"""
@title Storage proofs and faults
@license MIT
@notice One proof transaction per provider per period covers all of its live deals: the
        period's seed draws `challenges` leaves over the provider's live leaves (challenge.vy),
        the sum tree maps each to (slot, leaf) (sumtree.vy) and the leaf is verified against
        the slot's piece root (merkle.vy). Anyone may report an unproven period during the
        next period for a bounty paid from the provider's stake; `max_consecutive_misses`
        misses in a row terminate the provider's whole data set (its epoch).
@dev Per-provider bookkeeping is rolled lazily: `_roll` runs first in every function that
     touches a provider and moves it to the current period. Additions (new slots) take
     effect the period after they are made, and so do retirements (slots set to zero), so
     the challenged set of a period is fixed when the period starts (contracts/spec/
     schedule.py). Proven and reported periods are kept as bitmaps, 256 periods per word,
     which deals.vy reads to settle each deal lazily: the proof never iterates over deals.
"""
import clock
import registry
import sumtree
import merkle
import challenge
import bits
import events
import types

uses: clock
uses: registry
uses: sumtree

BPS: constant(uint256) = 10_000
PERIODS_PER_WORD: constant(uint256) = 256
MAX_CONSECUTIVE_MISSES: constant(uint256) = 64
# Retirements apply at the next roll, each a sum-tree update of O(log n) writes; the bound
# caps what one roll may add to the transaction that triggers it.
MAX_RETIREMENTS_PER_PERIOD: constant(uint256) = 32
# Widest range of periods one bit count may span, in bitmap words (deals.vy settles in steps
# of at most 4 words; one spare).
MAX_COUNT_WORDS: constant(uint256) = 5

challenges: public(immutable(uint256))
max_consecutive_misses: public(immutable(uint256))
miss_slash_bps: public(immutable(uint256))
bounty_bps: public(immutable(uint256))

states: HashMap[address, types.ProvingState]
# provider -> epoch -> slot -> the piece in that slot
slots: HashMap[address, HashMap[uint256, HashMap[uint256, types.Slot]]]
# provider -> i -> slot (of the current epoch) to set to zero at the next roll
retiring: HashMap[address, HashMap[uint256, uint256]]
# provider -> epoch -> first period after a terminated epoch (0 while the epoch runs)
epoch_end: public(HashMap[address, HashMap[uint256, uint256]])
# provider -> period // 256 -> one bit per period
proven_words: public(HashMap[address, HashMap[uint256, uint256]])
reported_words: public(HashMap[address, HashMap[uint256, uint256]])


@deploy
def __init__(
    _challenges: uint256,
    _max_consecutive_misses: uint256,
    _miss_slash_bps: uint256,
    _bounty_bps: uint256,
):
    """
    @param _challenges Leaves challenged per provider per period, in [1, 64].
    @param _max_consecutive_misses Missed periods in a row that terminate a data set.
    @param _miss_slash_bps Share of a deal's collateral slashed per missed period.
    @param _bounty_bps Share of each missed period's slash paid to the reporter.
    """
    assert _challenges >= 1 and _challenges <= types.MAX_CHALLENGES, (
        "proving: challenges out of range"
    )
    assert _max_consecutive_misses >= 1 and _max_consecutive_misses <= MAX_CONSECUTIVE_MISSES, (
        "proving: max misses out of range"
    )
    assert _miss_slash_bps <= BPS, "proving: slash above 100%"
    assert _bounty_bps <= BPS, "proving: bounty above 100%"
    challenges = _challenges
    max_consecutive_misses = _max_consecutive_misses
    miss_slash_bps = _miss_slash_bps
    bounty_bps = _bounty_bps


# ---------------------------------------------------------------- external


@external
def roll(provider: address):
    """
    @notice Bring a provider's bookkeeping to the current period (every call that touches a
            provider does this first; exposed so that a prover can read the rolled state).
    @param provider A registered provider.
    """
    registry._require_registered(provider)
    self._roll(provider)


@external
@nonreentrant
def submit_proof(proofs: DynArray[types.LeafProof, types.MAX_CHALLENGES]):
    """
    @notice Prove the current period for all of the caller's live deals.
    @dev Accepted from the block after the period's seed block to the period's last block.
         proofs[i] answers challenge i: the leaf at challenge_index(seed, provider, period,
         i, live_leaves), located in the sum tree, with its audit path in that slot's piece.
    @param proofs Exactly `challenges` leaf proofs, in challenge order.
    """
    self._roll(msg.sender)
    period: uint256 = clock._current_period()
    seed_block: uint256 = clock._period_start(period)
    assert block.number > seed_block, "proving: seed block not yet sealed"
    s: types.ProvingState = self.states[msg.sender]
    assert s.live_leaves > 0, "proving: nothing to prove"
    assert not self._bit(msg.sender, period, False), "proving: period already proven"
    assert len(proofs) == challenges, "proving: wrong number of proofs"
    seed: bytes32 = blockhash(seed_block)
    height: uint256 = sumtree._height(sumtree.sizes[msg.sender][s.epoch])
    for i: uint256 in range(challenges, bound=types.MAX_CHALLENGES):
        index: uint256 = challenge._challenge_index(seed, msg.sender, period, i, s.live_leaves)
        slot: uint256 = 0
        leaf: uint256 = 0
        leaves: uint256 = 0
        slot, leaf, leaves = sumtree._find(msg.sender, s.epoch, index, height)
        assert merkle._verify(
            self.slots[msg.sender][s.epoch][slot].piece_root,
            leaves,
            leaf,
            proofs[i].leaf,
            proofs[i].path,
        ), "proving: invalid proof"
    self._set_bit(msg.sender, period, False)
    log events.ProofSubmitted(
        provider=msg.sender, period=period, epoch=s.epoch, live_leaves=s.live_leaves, seed=seed
    )


@external
@nonreentrant
def report_fault(provider: address, period: uint256):
    """
    @notice Report that `provider` did not prove `period`, for a bounty from its stake.
    @dev Open during period + 1 only. The bounty is the sum of the live deals' per-miss
         bounties in that period (see `fault_bounty`). If the provider missed
         `max_consecutive_misses` periods in a row ending at `period`, its data set is
         terminated and all its deals end at period + 1.
    @param provider The provider.
    @param period The missed period.
    """
    self._roll(provider)
    current: uint256 = clock._current_period()
    assert current >= 1 and period == current - 1, "proving: outside the report window"
    assert not self._bit(provider, period, True), "proving: fault already reported"
    assert not self._bit(provider, period, False), "proving: period was proven"
    s: types.ProvingState = self.states[provider]
    assert s.prev_leaves > 0, "proving: nothing was challenged"
    self._set_bit(provider, period, True)
    bounty: uint256 = registry._take_stake(provider, s.prev_bounty)
    registry._pay(msg.sender, bounty)
    log events.FaultReported(provider=provider, period=period, reporter=msg.sender, bounty=bounty)
    if self._misses_reach_limit(provider, period, s.active_since):
        self._terminate(provider, current)


@external
@view
def proving_state(provider: address) -> types.ProvingState:
    """
    @notice A provider's proving bookkeeping as of the current period (the roll applied).
    @param provider A provider address.
    @return The state; `live_leaves` is the range of this period's challenges.
    """
    return self._advance(self.states[provider], clock._current_period())


@external
@view
def slot(provider: address, epoch: uint256, index: uint256) -> types.Slot:
    """
    @notice The piece in one slot of a provider's data set.
    @param provider A provider address.
    @param epoch The data set's epoch.
    @param index The 0-based slot.
    @return The slot; `retired_from` is the first period it is no longer challenged (0: live).
    """
    return self.slots[provider][epoch][index]


@external
@view
def slot_count(provider: address, epoch: uint256) -> uint256:
    """
    @notice Slots ever appended to a provider's data set in `epoch`.
    @param provider A provider address.
    @param epoch The data set's epoch.
    @return The number of slots.
    """
    return sumtree.sizes[provider][epoch]


@external
@view
def locate(provider: address, index: uint256) -> (uint256, uint256):
    """
    @notice Map a global leaf index of the provider's current data set to (slot, leaf).
    @dev Reads the sum tree as of the provider's last roll (call `roll` first for the
         current period's view).
    @param provider A provider address.
    @param index A global leaf index below the tree's total.
    @return (slot, leaf index within that slot's piece).
    """
    epoch: uint256 = self.states[provider].epoch
    slot: uint256 = 0
    leaf: uint256 = 0
    leaves: uint256 = 0
    slot, leaf, leaves = sumtree._find(
        provider, epoch, index, sumtree._height(sumtree.sizes[provider][epoch])
    )
    return slot, leaf


@external
@view
def is_proven(provider: address, period: uint256) -> bool:
    """
    @notice Whether `provider` proved `period`.
    @param provider A provider address.
    @param period A period.
    @return True once the proof was accepted.
    """
    return self._bit(provider, period, False)


@external
@view
def is_reported(provider: address, period: uint256) -> bool:
    """
    @notice Whether a fault of `provider` in `period` was reported.
    @param provider A provider address.
    @param period A period.
    @return True once reported.
    """
    return self._bit(provider, period, True)


@external
@view
def fault_bounty(provider: address, period: uint256) -> uint256:
    """
    @notice What `report_fault(provider, period)` would pay if sent now; 0 when it would
            revert (outside the window, proven, already reported or nothing challenged).
    @param provider A provider address.
    @param period A period.
    @return The bounty in tokens.
    """
    current: uint256 = clock._current_period()
    if current == 0 or period != current - 1:
        return 0
    if self._bit(provider, period, True) or self._bit(provider, period, False):
        return 0
    s: types.ProvingState = self._advance(self.states[provider], current)
    if s.prev_leaves == 0:
        return 0
    return min(s.prev_bounty, registry.providers[provider].stake)


@external
@view
def seed(period: uint256) -> bytes32:
    """
    @notice The challenge seed of `period`: the hash of its first block.
    @param period A period whose first block is among the last 256 blocks.
    @return The seed.
    """
    seed_block: uint256 = clock._period_start(period)
    assert seed_block < block.number, "proving: seed block not yet sealed"
    assert block.number - seed_block <= 256, "proving: seed block too old"
    return blockhash(seed_block)


@external
@pure
def challenge_index(
    seed: bytes32, provider: address, period: uint256, i: uint256, leaf_range: uint256
) -> uint256:
    """
    @notice The i-th challenged global leaf index (contracts/spec/challenge.py).
    @param seed The period's seed.
    @param provider The provider.
    @param period The period.
    @param i The challenge number.
    @param leaf_range The provider's live leaves in that period; positive.
    @return The index in [0, leaf_range).
    """
    assert leaf_range > 0, "proving: empty leaf range"
    return challenge._challenge_index(seed, provider, period, i, leaf_range)


@external
@pure
def verify_leaf(
    root: bytes32,
    piece_size: uint256,
    index: uint256,
    leaf: Bytes[types.LEAF_SIZE],
    path: DynArray[bytes32, types.MAX_PROOF_DEPTH],
) -> bool:
    """
    @notice Check a leaf against a piece root (contracts/spec/commitment.py verify_leaf).
    @param root The piece's Merkle root.
    @param piece_size The piece's size in bytes.
    @param index The leaf's index in the piece.
    @param leaf The 1 KiB leaf (the last one zero-padded).
    @param path Its RFC 9162 audit path, nearest sibling first.
    @return True when the leaf and path lead to `root`.
    """
    return merkle._verify_leaf(root, piece_size, index, leaf, path)


# ---------------------------------------------------------------- internal (used by deals.vy)


@internal
@view
def _bounty_per_miss(collateral: uint256) -> uint256:
    """
    @notice The bounty a deal contributes to each reported miss (contracts/spec/accounting.py).
    """
    return collateral * miss_slash_bps // BPS * bounty_bps // BPS


@internal
def _add_slot(
    provider: address, piece_root: bytes32, piece_size: uint256, bounty: uint256, deal_id: uint256
) -> (uint256, uint256):
    """
    @notice Append a piece to the provider's data set, challenged from the next period on.
            The provider must be rolled. Returns (epoch, slot).
    @dev Appending at the end never moves a global index below the current live range, so
         the addition needs no deferral in the tree; only the range grows at the next roll.
    """
    epoch: uint256 = self.states[provider].epoch
    leaves: uint256 = merkle._leaf_count(piece_size)
    index: uint256 = sumtree._append(provider, epoch, leaves)
    self.slots[provider][epoch][index] = types.Slot(
        piece_root=piece_root, piece_size=piece_size, deal_id=deal_id, retired_from=0
    )
    self.states[provider].pending_leaves += leaves
    self.states[provider].pending_bounty += bounty
    return epoch, index


@internal
@view
def _slot_live(provider: address, epoch: uint256, index: uint256) -> bool:
    """
    @notice Whether a slot is still in the challenge set and not queued for retirement.
    """
    return epoch == self.states[provider].epoch and self.slots[provider][epoch][index].retired_from == 0


@internal
def _retire(provider: address, epoch: uint256, index: uint256, bounty: uint256) -> bool:
    """
    @notice Queue a live slot, whose deal contributes `bounty` per missed period, for
            removal from the challenge set from the next period on. The provider must be
            rolled. Returns False when this period's queue is full.
    """
    count: uint256 = self.states[provider].retiring_count
    if count == MAX_RETIREMENTS_PER_PERIOD:
        return False
    from_period: uint256 = clock._current_period() + 1
    self.retiring[provider][count] = index
    self.slots[provider][epoch][index].retired_from = from_period
    self.states[provider].retiring_count = count + 1
    self.states[provider].retiring_leaves += merkle._leaf_count(
        self.slots[provider][epoch][index].piece_size
    )
    self.states[provider].retiring_bounty += bounty
    log events.SlotRetired(
        provider=provider,
        deal_id=self.slots[provider][epoch][index].deal_id,
        epoch=epoch,
        slot=index,
        from_period=from_period,
    )
    return True


@internal
@view
def _count_bits(provider: address, first: uint256, stop: uint256, reported: bool) -> uint256:
    """
    @notice Proven (or reported) periods in [first, stop), a range of at most
            MAX_COUNT_WORDS bitmap words.
    """
    if stop <= first:
        return 0
    count: uint256 = 0
    first_word: uint256 = first // PERIODS_PER_WORD
    last_word: uint256 = (stop - 1) // PERIODS_PER_WORD
    for w: uint256 in range(first_word, last_word + 1, bound=MAX_COUNT_WORDS):
        lo: uint256 = 0
        hi: uint256 = PERIODS_PER_WORD
        if w == first_word:
            lo = first % PERIODS_PER_WORD
        if w == last_word:
            hi = (stop - 1) % PERIODS_PER_WORD + 1
        word: uint256 = 0
        if reported:
            word = self.reported_words[provider][w]
        else:
            word = self.proven_words[provider][w]
        count += bits._count_range(word, lo, hi)
    return count


# ---------------------------------------------------------------- internal


@internal
@pure
def _advance(s: types.ProvingState, current: uint256) -> types.ProvingState:
    """
    @notice The bookkeeping moved to `current`: pending additions and retirements applied,
            `prev` set to the state of period current - 1. Pure: `_roll` also updates the tree.
    """
    if s.rolled_period >= current:
        return s
    r: types.ProvingState = s
    r.live_leaves = s.live_leaves + s.pending_leaves - s.retiring_leaves
    r.live_bounty = s.live_bounty + s.pending_bounty - s.retiring_bounty
    if current == s.rolled_period + 1:
        r.prev_leaves = s.live_leaves
        r.prev_bounty = s.live_bounty
    else:
        # Nothing changed between rolled_period + 1 and current - 1.
        r.prev_leaves = r.live_leaves
        r.prev_bounty = r.live_bounty
    if s.live_leaves == 0 and r.live_leaves > 0:
        r.active_since = s.rolled_period + 1
    r.pending_leaves = 0
    r.pending_bounty = 0
    r.retiring_leaves = 0
    r.retiring_bounty = 0
    r.retiring_count = 0
    r.rolled_period = current
    return r


@internal
def _roll(provider: address):
    """
    @notice Move a provider's bookkeeping to the current period (see `_advance`) and zero the
            retired slots in its sum tree.
    """
    current: uint256 = clock._current_period()
    if self.states[provider].rolled_period >= current:
        return  # one storage read when already rolled (most calls)
    s: types.ProvingState = self.states[provider]
    for i: uint256 in range(s.retiring_count, bound=MAX_RETIREMENTS_PER_PERIOD):
        index: uint256 = self.retiring[provider][i]
        sumtree._clear(
            provider,
            s.epoch,
            index,
            merkle._leaf_count(self.slots[provider][s.epoch][index].piece_size),
        )
    r: types.ProvingState = self._advance(s, current)
    self.states[provider] = r
    log events.PeriodRolled(
        provider=provider,
        period=current,
        epoch=r.epoch,
        live_leaves=r.live_leaves,
        retired_slots=s.retiring_count,
    )


@internal
@view
def _misses_reach_limit(provider: address, period: uint256, active_since: uint256) -> bool:
    """
    @notice Whether the `max_consecutive_misses` periods ending at `period` were all
            challenged and none proven. Read from the bitmap, so that the answer does not
            depend on whether a later proof landed before the report.
    """
    if period + 1 < max_consecutive_misses:
        return False
    first: uint256 = period + 1 - max_consecutive_misses
    if first < active_since:
        return False
    for j: uint256 in range(max_consecutive_misses, bound=MAX_CONSECUTIVE_MISSES):
        if self._bit(provider, first + j, False):
            return False
    return True


@internal
def _terminate(provider: address, end_period: uint256):
    """
    @notice End the provider's data set: every deal of the epoch stops at `end_period`, the
            challenge set starts empty in a new epoch.
    """
    epoch: uint256 = self.states[provider].epoch
    self.epoch_end[provider][epoch] = end_period
    self.states[provider] = types.ProvingState(
        epoch=epoch + 1,
        rolled_period=clock._current_period(),
        live_leaves=0,
        live_bounty=0,
        pending_leaves=0,
        pending_bounty=0,
        retiring_leaves=0,
        retiring_bounty=0,
        retiring_count=0,
        prev_leaves=0,
        prev_bounty=0,
        active_since=0,
    )
    log events.ProviderTerminated(provider=provider, epoch=epoch, end_period=end_period)


@internal
@view
def _bit(provider: address, period: uint256, reported: bool) -> bool:
    """
    @notice One period's bit in the proven (or reported) bitmap.
    """
    word: uint256 = 0
    if reported:
        word = self.reported_words[provider][period // PERIODS_PER_WORD]
    else:
        word = self.proven_words[provider][period // PERIODS_PER_WORD]
    return (word >> (period % PERIODS_PER_WORD)) & 1 == 1


@internal
def _set_bit(provider: address, period: uint256, reported: bool):
    """
    @notice Set one period's bit in the proven (or reported) bitmap.
    """
    w: uint256 = period // PERIODS_PER_WORD
    bit: uint256 = 1 << (period % PERIODS_PER_WORD)
    if reported:
        self.reported_words[provider][w] |= bit
    else:
        self.proven_words[provider][w] |= bit
