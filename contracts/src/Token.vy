# pragma version ~=0.4.3
"""
@title Depot storage token
@license MIT
@notice ERC-20 (https://eips.ethereum.org/EIPS/eip-20) used for stakes, escrows, payments
        and bounties. The deployer may mint; on a devnet a capped `faucet` lets anyone mint.
@dev An allowance of max_value(uint256) is treated as infinite and never decreased.
"""
from ethereum.ercs import IERC20

implements: IERC20

MAX_NAME: constant(uint256) = 64
MAX_SYMBOL: constant(uint256) = 32

name: public(String[MAX_NAME])
symbol: public(String[MAX_SYMBOL])
decimals: public(constant(uint8)) = 18
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

owner: public(immutable(address))
faucet_enabled: public(immutable(bool))
faucet_cap: public(immutable(uint256))


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@deploy
def __init__(
    _name: String[MAX_NAME], _symbol: String[MAX_SYMBOL], _faucet_enabled: bool, _faucet_cap: uint256
):
    """
    @param _name Token name.
    @param _symbol Token symbol.
    @param _faucet_enabled Whether anyone may mint up to `_faucet_cap` per call (devnets only).
    @param _faucet_cap Largest amount one `faucet` call mints.
    """
    self.name = _name
    self.symbol = _symbol
    owner = msg.sender
    faucet_enabled = _faucet_enabled
    faucet_cap = _faucet_cap


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` of the caller's tokens to `receiver`.
    @param receiver The recipient; not the zero address.
    @param amount Tokens to move.
    @return True.
    """
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` of `sender`'s tokens to `receiver` within the caller's allowance.
    @param sender The owner of the tokens.
    @param receiver The recipient; not the zero address.
    @param amount Tokens to move.
    @return True.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "token: insufficient allowance"
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's tokens.
    @param spender The spender.
    @param amount The allowance (max_value(uint256): unlimited).
    @return True.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(receiver: address, amount: uint256):
    """
    @notice Create `amount` new tokens for `receiver`; owner only.
    @param receiver The recipient.
    @param amount Tokens to create.
    """
    assert msg.sender == owner, "token: caller is not the owner"
    self._mint(receiver, amount)


@external
def faucet(amount: uint256):
    """
    @notice Mint up to `faucet_cap` tokens to the caller (devnet deployments only).
    @param amount Tokens to mint.
    """
    assert faucet_enabled, "token: faucet disabled"
    assert amount <= faucet_cap, "token: above faucet cap"
    self._mint(msg.sender, amount)


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    """
    @notice Move tokens between balances.
    """
    assert receiver != empty(address), "token: transfer to the zero address"
    balance: uint256 = self.balanceOf[sender]
    assert balance >= amount, "token: insufficient balance"
    self.balanceOf[sender] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _mint(receiver: address, amount: uint256):
    """
    @notice Create tokens.
    """
    assert receiver != empty(address), "token: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)
