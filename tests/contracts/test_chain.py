"""contracts/chain.py against a real anvil (web3.py + eth-account, no brownie)."""

import random

import pytest
from ledger_helpers import TOKEN, Piece

from contracts import events as ev
from contracts.artifacts import MARKET, load_artifact
from contracts.chain import LedgerClient, ProviderStatus, connect, new_nonce
from contracts.deployment import Deployment
from contracts.errors import (
    ChainMismatch,
    FaultAlreadyReported,
    InvalidProof,
    LocalError,
    NoAccount,
    NonceUsed,
    NothingToSettle,
    PeriodAlreadyProven,
    RegistryReverted,
    RpcUnavailable,
)
from contracts.spec.deal import DealProposal


def mine_to_window(client, period=None, offset=0):
    """Mine so that the head is ``offset`` blocks past ``period``'s seed block (offset 0:
    the next transaction lands in the first block of the proving window)."""
    period = client.current_period() + 1 if period is None else period
    target = client.schedule.seed_block(period) + offset
    head = client.current_block()
    if target > head:
        client.web3.provider.make_request("anvil_mine", [hex(target - head)])
    return period


def answer(piece, challenges):
    return [piece.answer(c.leaf) for c in challenges]


@pytest.fixture
def clients(devnet):
    provider = LedgerClient(devnet.url, devnet.deployment, devnet.keys[1])
    client = LedgerClient(devnet.url, devnet.deployment, devnet.keys[2])
    auditor = LedgerClient(devnet.url, devnet.deployment, devnet.keys[3])
    for c in (provider, client):
        c.approve()
    return provider, client, auditor


@pytest.fixture
def deal(clients):
    """A registered provider with one deal on a 5-leaf piece, challenged from next period."""
    provider, client, _ = clients
    provider.register(b"\x05" * 32, "127.0.0.1:4001", 500 * TOKEN)
    piece = Piece.random(4 * 1024 + 77, random.Random(5))
    proposal = DealProposal(
        client=client.address,
        provider=provider.address,
        piece_root=piece.root,
        piece_size=piece.size,
        price_per_period=2 * TOKEN,
        periods=4,
        collateral=40 * TOKEN,
        nonce=new_nonce(),
        expiry_block=client.current_block() + 100,
    )
    deal_id = provider.accept_deal(proposal, client.sign_proposal(proposal))
    return deal_id, piece, proposal


def test_reads_match_the_deployment(devnet):
    reader = LedgerClient(devnet.url, devnet.deployment)
    assert reader.chain_params() == devnet.deployment.params
    assert reader.current_period() == reader.schedule.period_of(reader.current_block())
    assert reader.balance_of(devnet.keys[1].address) > 0
    assert reader.provider(devnet.keys[1].address).status is ProviderStatus.NONE
    assert reader.deal_count() == 0
    with pytest.raises(NoAccount):
        reader.approve()
    with pytest.raises(NoAccount):
        _ = reader.address


def test_register_and_provider_record(clients):
    provider, _, _ = clients
    receipt = provider.register(b"\x01" * 32, "10.0.0.1:4001", 300 * TOKEN)
    event = receipt.first(ev.ProviderRegistered)
    assert (event.provider, event.node_id, event.stake) == (
        provider.address,
        b"\x01" * 32,
        300 * TOKEN,
    )
    assert event.block_number == receipt.block_number and event.tx_hash == receipt.tx_hash
    info = provider.provider(provider.address)
    assert info.status is ProviderStatus.ACTIVE
    assert (info.stake, info.locked, info.free_stake) == (300 * TOKEN, 0, 300 * TOKEN)
    assert info.endpoint == "10.0.0.1:4001"
    provider.top_up(10 * TOKEN)
    provider.update_endpoint("10.0.0.2:4001")
    info = provider.provider(provider.address)
    assert (info.stake, info.endpoint) == (310 * TOKEN, "10.0.0.2:4001")
    with pytest.raises(RegistryReverted, match="registry: already registered"):
        provider.register(b"\x02" * 32, "x:1", 300 * TOKEN)


def test_deal_lifecycle_through_the_client(devnet, clients, deal):
    provider, client, auditor = clients
    deal_id, piece, proposal = deal
    info = provider.deal(deal_id)
    assert (info.client, info.provider, info.piece_root, info.piece_size) == (
        client.address,
        provider.address,
        piece.root,
        piece.size,
    )
    assert info.stop == info.end == info.start + 4 and not info.closed
    assert provider.nonce_used(client.address, proposal.nonce)
    with pytest.raises(NonceUsed):
        provider.accept_deal(proposal, client.sign_proposal(proposal))

    period = mine_to_window(provider)
    challenges = provider.challenges(provider.address)
    assert len(challenges) == devnet.deployment.params.challenges
    assert all(c.deal_id == deal_id and c.piece_root == piece.root for c in challenges)
    receipt = provider.submit_proof(answer(piece, challenges))
    proven = receipt.first(ev.ProofSubmitted)
    assert (proven.period, proven.live_leaves) == (period, piece.leaves)
    assert proven.seed == provider.seed(period)
    assert provider.is_proven(provider.address, period)
    with pytest.raises(PeriodAlreadyProven):
        provider.submit_proof(answer(piece, challenges))

    # Miss the next period; an auditor reports it for the bounty.
    mine_to_window(provider, period + 2)
    bounty = auditor.fault_bounty(provider.address, period + 1)
    assert bounty == 40 * TOKEN // 10 // 2
    before = auditor.balance_of(auditor.address)
    report = auditor.report_fault(provider.address, period + 1)
    assert report.first(ev.FaultReported).bounty == bounty
    assert auditor.balance_of(auditor.address) == before + bounty
    assert auditor.is_reported(provider.address, period + 1)
    with pytest.raises(FaultAlreadyReported):
        auditor.report_fault(provider.address, period + 1)

    settled = client.settle(deal_id).first(ev.DealSettled)
    assert (settled.proven, settled.missed, settled.reported) == (1, 0, 0)
    assert settled.provider_paid == 2 * TOKEN
    with pytest.raises(NothingToSettle):
        client.settle(deal_id)

    history = provider.events(devnet.deployment.deploy_block)
    kinds = [type(e) for e in history]
    for kind in (ev.ProviderRegistered, ev.DealAccepted, ev.ProofSubmitted, ev.FaultReported):
        assert kind in kinds
    assert history == sorted(history, key=lambda e: (e.block_number, e.log_index))
    only = provider.events(devnet.deployment.deploy_block, kinds=[ev.FaultReported])
    assert [type(e) for e in only] == [ev.FaultReported]
    assert only[0] == report.first(ev.FaultReported)


def test_invalid_proof_is_a_typed_error(clients, deal):
    provider, _, _ = clients
    _, piece, _ = deal
    mine_to_window(provider)
    proofs = answer(piece, provider.challenges(provider.address))
    leaf, path = proofs[0]
    proofs[0] = (bytes([leaf[0] ^ 1]) + leaf[1:], path)
    with pytest.raises(InvalidProof) as err:
        provider.submit_proof(proofs)
    assert err.value.reason == "proving: invalid proof" and err.value.module == "proving"


def test_challenges_need_a_sealed_seed_and_live_leaves(clients, deal):
    provider, _, _ = clients
    with pytest.raises(LocalError, match="nothing to prove"):
        provider.challenges(provider.address)  # the deal is challenged from the next period
    mine_to_window(provider, offset=-1)  # the next block is the seed block
    with pytest.raises(LocalError, match="not sealed"):
        provider.challenges(provider.address)


def test_challenges_follow_retirements(devnet, clients):
    """The client's slot mirror agrees with the contract after a slot is retired."""
    provider, client, _ = clients
    provider.register(b"\x06" * 32, "h:1", 500 * TOKEN)
    rng = random.Random(6)
    pieces = [Piece.random(n * 1024, rng) for n in (3, 2, 4)]
    ids = []
    for piece in pieces:
        p = DealProposal(client.address, provider.address, piece.root, piece.size, TOKEN, 6, 0,
                         new_nonce(), client.current_block() + 50)  # fmt: skip
        ids.append(provider.accept_deal(p, client.sign_proposal(p)))
    mine_to_window(provider)
    provider.declare_loss(ids[1])
    mine_to_window(provider)
    challenges = provider.challenges(provider.address)
    assert {c.slot for c in challenges} <= {0, 2}
    by_root = {p.root: p for p in pieces}
    provider.submit_proof([by_root[c.piece_root].answer(c.leaf) for c in challenges])
    slots = provider.slots(provider.address)
    assert [s.deal_id for s in slots] == ids
    assert slots[1].retired_from == provider.current_period()


def test_sign_proposal_only_for_own_proposals(clients, deal):
    provider, _, _ = clients
    _, _, proposal = deal
    with pytest.raises(LocalError, match="not"):
        provider.sign_proposal(proposal)


def test_events_cover_the_abi():
    """One dataclass per contract event, with exactly the event's fields."""
    abi_events = {
        item["name"]: [i["name"] for i in item["inputs"]]
        for item in load_artifact(MARKET).abi
        if item["type"] == "event"
    }
    assert set(abi_events) == set(ev.EVENT_TYPES)
    base = {"block_number", "tx_hash", "log_index"}
    for name, fields in abi_events.items():
        own = [f for f in ev.EVENT_TYPES[name].__dataclass_fields__ if f not in base]
        assert own == fields, name


def test_chain_mismatch_and_unreachable_node(devnet):
    wrong = Deployment(**{**devnet.deployment.__dict__, "chain_id": 1})
    with pytest.raises(ChainMismatch):
        LedgerClient(devnet.url, wrong)
    with pytest.raises(RpcUnavailable):
        LedgerClient("http://127.0.0.1:9", devnet.deployment)
    web3 = connect(devnet.url)
    client = LedgerClient(web3, devnet.deployment)
    assert client.web3 is web3
