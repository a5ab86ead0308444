"""Token.vy: ERC-20 transfers and allowances, owner mint, the devnet faucet."""

import pytest
from ledger_helpers import MAX_UINT, TOKEN, reverts

ZERO = "0x" + "00" * 20


def test_metadata(ledger):
    t = ledger.token
    assert t.name() == "Depot Storage"
    assert t.symbol() == "DST"
    assert t.decimals() == 18
    assert t.owner() == ledger.accounts[0]
    assert t.totalSupply() == sum(t.balanceOf(a) for a in ledger.accounts)


def test_transfer_moves_balance_and_logs(ledger):
    a, b = ledger.accounts[1], ledger.accounts[2]
    before_a, before_b = ledger.token.balanceOf(a), ledger.token.balanceOf(b)
    tx = ledger.token.transfer(b, 5 * TOKEN, {"from": a})
    assert tx.return_value is True
    assert ledger.token.balanceOf(a) == before_a - 5 * TOKEN
    assert ledger.token.balanceOf(b) == before_b + 5 * TOKEN
    assert dict(tx.events["Transfer"]) == {"sender": a, "receiver": b, "value": 5 * TOKEN}


def test_transfer_rejects_overdraft_and_zero_address(ledger):
    a = ledger.accounts[1]
    balance = ledger.token.balanceOf(a)
    with reverts("token: insufficient balance"):
        ledger.token.transfer(ledger.accounts[2], balance + 1, {"from": a})
    with reverts("token: transfer to the zero address"):
        ledger.token.transfer(ZERO, 1, {"from": a})


def test_transfer_from_spends_allowance(ledger):
    owner, spender, to = ledger.accounts[1], ledger.accounts[2], ledger.accounts[3]
    tx = ledger.token.approve(spender, 7 * TOKEN, {"from": owner})
    assert dict(tx.events["Approval"]) == {"owner": owner, "spender": spender, "value": 7 * TOKEN}
    ledger.token.transferFrom(owner, to, 3 * TOKEN, {"from": spender})
    assert ledger.token.allowance(owner, spender) == 4 * TOKEN
    with reverts("token: insufficient allowance"):
        ledger.token.transferFrom(owner, to, 5 * TOKEN, {"from": spender})


def test_infinite_allowance_is_not_spent(ledger):
    owner, spender = ledger.accounts[1], ledger.accounts[2]
    ledger.token.approve(spender, MAX_UINT, {"from": owner})
    ledger.token.transferFrom(owner, spender, TOKEN, {"from": spender})
    assert ledger.token.allowance(owner, spender) == MAX_UINT


def test_mint_is_owner_only(ledger):
    supply = ledger.token.totalSupply()
    ledger.token.mint(ledger.accounts[5], 9, {"from": ledger.accounts[0]})
    assert ledger.token.totalSupply() == supply + 9
    with reverts("token: caller is not the owner"):
        ledger.token.mint(ledger.accounts[5], 9, {"from": ledger.accounts[5]})
    with reverts("token: mint to the zero address"):
        ledger.token.mint(ZERO, 9, {"from": ledger.accounts[0]})


def test_faucet_mints_up_to_cap(ledger):
    user = ledger.accounts[6]
    before = ledger.token.balanceOf(user)
    cap = ledger.token.faucet_cap()
    ledger.token.faucet(cap, {"from": user})
    assert ledger.token.balanceOf(user) == before + cap
    with reverts("token: above faucet cap"):
        ledger.token.faucet(cap + 1, {"from": user})


def test_faucet_disabled(ledger):
    token = ledger.project.Token.deploy("X", "X", False, 10 * TOKEN, {"from": ledger.accounts[0]})
    assert token.faucet_enabled() is False
    with reverts("token: faucet disabled"):
        token.faucet(1, {"from": ledger.accounts[1]})


@pytest.mark.parametrize("amount", [0, 1])
def test_zero_and_small_transfers(ledger, amount):
    a, b = ledger.accounts[1], ledger.accounts[2]
    tx = ledger.token.transfer(b, amount, {"from": a})
    assert tx.events["Transfer"]["value"] == amount
