"""contracts/errors.py: revert reasons map onto the error tree."""

import pytest

from contracts import errors as e


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("proving: fault already reported", e.FaultAlreadyReported),
        ("proving: period was proven", e.PeriodAlreadyProven),
        ("proving: invalid proof", e.InvalidProof),
        ("proving: outside the report window", e.OutsideWindow),
        ("proving: nothing to prove", e.ProvingReverted),
        ("deals: nonce already used", e.NonceUsed),
        ("deals: proposal expired", e.ProposalExpired),
        ("deals: nothing to settle", e.NothingToSettle),
        ("deals: unknown deal", e.DealsReverted),
        ("registry: stake below minimum", e.RegistryReverted),
        ("token: insufficient allowance", e.TokenReverted),
        ("market: pieces still challenged", e.MarketReverted),
        ("something else", e.Reverted),
        ("", e.Reverted),
    ],
)
def test_from_reason(reason, cls):
    err = e.Reverted.from_reason(reason, "0xabc")
    assert type(err) is cls
    assert err.reason == reason and err.tx_hash == "0xabc"
    assert isinstance(err, e.RemoteError) and isinstance(err, e.LedgerError)


def test_module_and_message():
    err = e.Reverted.from_reason("deals: unknown deal")
    assert err.module == "deals"
    assert str(err) == "deals: unknown deal"
    assert str(e.Reverted("")) == "reverted without a reason"
    assert e.Reverted("").module == ""


def test_tree():
    for cls in (e.DeploymentError, e.ArtifactError, e.NoAccount):
        assert issubclass(cls, e.LocalError)
    for cls in (e.RpcUnavailable, e.ChainMismatch, e.TransactionFailed, e.TransactionStuck):
        assert issubclass(cls, e.RemoteError)
