"""market.discovery.check_ask and market.network helpers: which asks and endpoints count."""

from __future__ import annotations

from contracts.chain import ProviderInfo, ProviderStatus
from contracts.offers import GIB, Ask, ManifestStored
from market.discovery import CheckedAsk, check_ask
from market.network import chain_peers, endpoint_addrs
from node import wire
from node.kademlia.messages import Address, ProviderRecord

MARKET = "0x" + "22" * 20
PROVIDER = "0x" + "ab" * 20
NODE = b"\x07" * 32


def info(
    address: str = PROVIDER,
    node_id: bytes = NODE,
    endpoint: str = "127.0.0.1:4001",
    status: ProviderStatus = ProviderStatus.ACTIVE,
) -> ProviderInfo:
    return ProviderInfo(address, node_id, 10**21, 0, 0, status, 0, endpoint)


def record(payload: bytes) -> ProviderRecord:
    return ProviderRecord(
        b"\x01" * 32,
        NODE,
        b"\x02" * 32,
        (Address("127.0.0.1", 4001),),
        payload,
        1,
        2**40,
        b"\x00" * 64,
    )


def ask(**kw: object) -> bytes:
    fields: dict[str, object] = {
        "provider": bytes.fromhex(PROVIDER[2:]),
        "chain_id": 31337,
        "market": bytes.fromhex(MARKET[2:]),
        "price_per_gib_period": 1,
        "collateral_per_gib": 1,
        "min_piece_size": 1,
        "max_piece_size": GIB,
        "max_periods": 10,
        "free_bytes": GIB,
        "issued_at": 1,
    }
    fields.update(kw)
    return wire.encode(Ask(**fields))  # type: ignore[arg-type]


def test_a_good_ask_and_where_to_reach_its_provider() -> None:
    got = check_ask(record(ask()), info(), 31337, MARKET.upper().replace("0X", "0x"))
    assert isinstance(got, CheckedAsk)
    assert got.ask.max_periods == 10 and got.addrs == (("127.0.0.1", 4001),)


def test_asks_that_do_not_count() -> None:
    assert "undecodable" in check_ask(record(b"\xff\x00"), info(), 31337, MARKET)
    other = wire.encode(ManifestStored(b"\x00" * 32))
    assert "not an ask" in check_ask(record(other), info(), 31337, MARKET)
    assert "unregistered" in check_ask(record(ask()), None, 31337, MARKET)
    assert "another market" in check_ask(record(ask(chain_id=1)), info(), 31337, MARKET)
    assert "another market" in check_ask(record(ask()), info(), 31337, "0x" + "33" * 20)
    # Signed by a staked node, but naming someone else's address (someone else's stake).
    assert "another provider" in check_ask(
        record(ask()), info(address="0x" + "cd" * 20), 31337, MARKET
    )


def test_endpoints() -> None:
    assert endpoint_addrs("203.0.113.7:4001") == (("203.0.113.7", 4001),)
    assert endpoint_addrs("[::1]:9") == (("::1", 9),)
    for bad in ("example.com:80", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:70000", ""):
        assert endpoint_addrs(bad) == ()


def test_chain_peers_are_the_staked_providers_with_an_endpoint() -> None:
    peers = chain_peers(
        [info(), info(node_id=b"\x08" * 32), info(node_id=b"\x09" * 32, endpoint="nowhere")],
        staked={NODE, b"\x09" * 32},
    )
    assert [p.node_id for p in peers] == [NODE]
