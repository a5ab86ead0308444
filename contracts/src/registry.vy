# pragma version ~=0.4.3
"""
@title Provider registry
@license MIT
@notice Providers register with a node identity, an endpoint and a stake of at least
        `min_stake`; top up; request exit; withdraw after `unbonding_periods` once all their
        deals are settled. The stake is one pool: deal collateral is a lock on it, fault
        bounties and client compensation are paid out of it, and locked stake cannot leave.
@dev The registry also holds the market's token and is the only module that moves it.
"""
from ethereum.ercs import IERC20

import clock
import events
import types

uses: clock

token: public(immutable(IERC20))
min_stake: public(immutable(uint256))
unbonding_periods: public(immutable(uint256))

providers: public(HashMap[address, types.Provider])
endpoints: public(HashMap[address, String[types.MAX_ENDPOINT]])
node_owner: public(HashMap[bytes32, address])


@deploy
def __init__(_token: IERC20, _min_stake: uint256, _unbonding_periods: uint256):
    """
    @param _token The ERC-20 used for stake, escrow and payments.
    @param _min_stake Stake a provider must keep free of deal locks (its fault bond).
    @param _unbonding_periods Periods between an exit request and the withdrawal.
    """
    assert _token.address != empty(address), "registry: token is the zero address"
    token = _token
    min_stake = _min_stake
    unbonding_periods = _unbonding_periods


# ---------------------------------------------------------------- external


@external
@nonreentrant
def register(node_id: bytes32, endpoint: String[types.MAX_ENDPOINT], stake: uint256):
    """
    @notice Register the caller as a provider, pulling `stake` tokens by allowance.
    @param node_id The provider's P2P node id (sha256 of its Ed25519 public key).
    @param endpoint Where the provider's node listens (free-form, e.g. "host:port").
    @param stake Initial stake; at least `min_stake`.
    """
    assert self.providers[msg.sender].status == empty(types.ProviderStatus), (
        "registry: already registered"
    )
    assert node_id != empty(bytes32), "registry: empty node id"
    assert self.node_owner[node_id] == empty(address), "registry: node id taken"
    assert len(endpoint) > 0, "registry: empty endpoint"
    assert stake >= min_stake, "registry: stake below minimum"
    self.providers[msg.sender] = types.Provider(
        node_id=node_id,
        stake=stake,
        locked=0,
        open_deals=0,
        status=types.ProviderStatus.ACTIVE,
        exit_period=0,
    )
    self.endpoints[msg.sender] = endpoint
    self.node_owner[node_id] = msg.sender
    self._pull(msg.sender, stake)
    log events.ProviderRegistered(
        provider=msg.sender, node_id=node_id, endpoint=endpoint, stake=stake
    )


@external
@nonreentrant
def top_up(amount: uint256):
    """
    @notice Add `amount` tokens to the caller's stake (pulled by allowance).
    @param amount Tokens to add; positive.
    """
    self._require_registered(msg.sender)
    assert amount > 0, "registry: zero amount"
    stake: uint256 = self.providers[msg.sender].stake + amount
    self.providers[msg.sender].stake = stake
    self._pull(msg.sender, amount)
    log events.StakeAdded(provider=msg.sender, amount=amount, stake=stake)


@external
def update_endpoint(endpoint: String[types.MAX_ENDPOINT]):
    """
    @notice Change where the caller's node can be reached.
    @param endpoint The new endpoint; not empty.
    """
    self._require_registered(msg.sender)
    assert len(endpoint) > 0, "registry: empty endpoint"
    self.endpoints[msg.sender] = endpoint
    log events.EndpointUpdated(provider=msg.sender, endpoint=endpoint)


@external
def request_exit():
    """
    @notice Stop taking deals; the stake can be withdrawn `unbonding_periods` later, once
            every deal is settled.
    """
    assert self.providers[msg.sender].status == types.ProviderStatus.ACTIVE, (
        "registry: not an active provider"
    )
    period: uint256 = clock._current_period()
    self.providers[msg.sender].status = types.ProviderStatus.EXITING
    self.providers[msg.sender].exit_period = period
    log events.ExitRequested(provider=msg.sender, period=period)


@external
@view
def free_stake(provider: address) -> uint256:
    """
    @notice Stake not locked by deals, i.e. what backs new collateral and the fault bond.
    @param provider A provider address.
    @return stake - locked, or 0 when faults have eaten into the locked part.
    """
    p: types.Provider = self.providers[provider]
    if p.stake <= p.locked:
        return 0
    return p.stake - p.locked


# ---------------------------------------------------------------- internal


@internal
@view
def _require_registered(provider: address):
    """
    @notice Revert unless `provider` is registered and has not withdrawn.
    """
    status: types.ProviderStatus = self.providers[provider].status
    assert status in (types.ProviderStatus.ACTIVE | types.ProviderStatus.EXITING), (
        "registry: not a provider"
    )


@internal
def _open_deal(provider: address, collateral: uint256):
    """
    @notice Lock `collateral` for a new deal; the rest must still cover the minimum stake.
    """
    p: types.Provider = self.providers[provider]
    assert p.status == types.ProviderStatus.ACTIVE, "registry: provider not active"
    assert p.stake >= p.locked + collateral + min_stake, "registry: stake too low for collateral"
    self.providers[provider].locked = p.locked + collateral
    self.providers[provider].open_deals = p.open_deals + 1


@internal
def _release(provider: address, amount: uint256):
    """
    @notice Release `amount` of a deal's lock (spent by a slash or freed at settlement).
    """
    self.providers[provider].locked -= amount


@internal
def _close_deal(provider: address):
    """
    @notice Count a deal as finally settled.
    """
    self.providers[provider].open_deals -= 1


@internal
def _take_stake(provider: address, amount: uint256) -> uint256:
    """
    @notice Take up to `amount` from the stake (a slash); returns what was taken. The
            caller transfers it.
    """
    stake: uint256 = self.providers[provider].stake
    taken: uint256 = min(amount, stake)
    self.providers[provider].stake = stake - taken
    return taken


@internal
@view
def _require_withdrawable(provider: address):
    """
    @notice Revert unless the provider asked to exit, unbonded, and has no open deal.
    """
    p: types.Provider = self.providers[provider]
    assert p.status == types.ProviderStatus.EXITING, "registry: exit not requested"
    assert clock._current_period() >= p.exit_period + unbonding_periods, (
        "registry: still unbonding"
    )
    assert p.open_deals == 0, "registry: deals still open"


@internal
def _withdraw(provider: address) -> uint256:
    """
    @notice Pay out the whole stake of an exited provider; returns the amount.
    """
    self._require_withdrawable(provider)
    amount: uint256 = self.providers[provider].stake
    self.providers[provider].stake = 0
    self.providers[provider].status = types.ProviderStatus.WITHDRAWN
    self._pay(provider, amount)
    log events.StakeWithdrawn(provider=provider, amount=amount)
    return amount


@internal
def _pull(sender: address, amount: uint256):
    """
    @notice Move `amount` tokens from `sender` to the market (needs an allowance).
    """
    if amount > 0:
        assert extcall token.transferFrom(sender, self, amount, default_return_value=True), (
            "registry: token transfer failed"
        )


@internal
def _pay(to: address, amount: uint256):
    """
    @notice Move `amount` tokens from the market to `to`.
    """
    if amount > 0:
        assert extcall token.transfer(to, amount, default_return_value=True), (
            "registry: token transfer failed"
        )
