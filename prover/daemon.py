"""
``prover run``: the daemon, a thin async layer over the sans-I/O parts.

Start-up, in order: the database (migrated), the blob store (scanned), the P2P node
(transport, DHT with the staked-signer policy, swarm serving the blob store and taking
pushes into it, the deal protocol), the HTTP API, then ``run.json`` and a ``ready`` line on
stdout. The P2P side and the API work from then on, whatever the chain does.

The chain side runs in one task: connect (retrying while the endpoint is down), check that
the chain is the one we know (chain id, market code, genesis hash recorded in the database),
register and stake if needed (or update the endpoint), load the challenge mirror, and then
at every new head, in order: follow the events (``follower``), advance the proving round
(``rounds``), and do the housekeeping (``upkeep``). One task, so that a settlement never
competes with a proof for the account's nonces. An outage pauses it with backoff and it
catches up from its cursor when the endpoint returns.

SIGTERM/SIGINT stop it cleanly: tasks cancelled, the API and the node closed, the DHT table
saved, the database closed, ``run.json`` removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from eth_account.signers.local import LocalAccount

from contracts.chain import LedgerClient, ProviderStatus
from contracts.errors import ChainMismatch, LedgerError
from contracts.offers import DEAL_PROTOCOL
from contracts.txs import TxConfig
from node.identity import NodeKey
from node.kademlia.config import KademliaConfig
from node.kademlia.records import StakedSigners
from node.kademlia.service import KademliaService, parse_peer
from node.metrics import Registry, render_prometheus
from node.swarm.service import Swarm
from node.transport import Host
from prover.announce import Announcer
from prover.api import create_app
from prover.blobstore import BlobStore
from prover.chain import OUTAGE_ERRORS, Chain
from prover.config import ProverConfig, parse_addr
from prover.context import Context
from prover.db import Database
from prover.deals import DealDesk
from prover.errors import ChainUnavailable, ConfigError, LocalError, ProverError
from prover.follower import EventFollower
from prover.home import Home
from prover.logs import event
from prover.metrics import ProverMetrics
from prover.rounds import ProvingDriver
from prover.scrub import Scrubber
from prover.upkeep import Upkeep
from prover.views import summary_view

log = logging.getLogger("prover.daemon")

GENESIS_KEY = "genesis"
LAG_PROBE_INTERVAL = 0.25
"""Seconds between probes of the event loop's lag."""
LAG_WARNING = 1.0
"""A wake-up this late is logged: something blocked the loop that proofs run on."""
WORKER_THREADS = 32
"""Threads for blocking ledger calls and disk reads (a hung RPC holds one each)."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn in our loop: the daemon owns the signal handlers, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ProverNode:
    """One running prover: ``start``, then ``run`` until ``stop``."""

    def __init__(self, home: Home, config: ProverConfig, account: LocalAccount) -> None:
        self.home = home
        self.config = config
        self.account = account
        self.fatal: ProverError | LedgerError | None = None
        self.stopped = asyncio.Event()
        """Set when the daemon should stop (a signal, or a fatal error of the chain side)."""
        self._closed = False
        self._db: Database | None = None
        self._store: BlobStore | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._identified_at = 0
        """``Chain.failures`` at the last identity check."""
        self._server: _EmbeddedServer | None = None
        self._server_task: asyncio.Task[Any] | None = None
        self.api_url: str | None = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ start

    async def start(self) -> dict[str, Any]:
        """Bring everything up but the chain side; returns the ready information."""
        home, config = self.home, self.config
        # Ledger calls block in threads; an endpoint that hangs must not starve the others.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="prover")
        )
        deployment = home.load_deployment(config)
        db = self._db = Database.open(home.database_url(config))
        store = self._store = BlobStore(
            home.blob_path(config), config.storage.capacity, config.storage.reserve
        )
        held = store.scan()
        node_key = NodeKey.load(home.key_path)
        registry = Registry()
        self.registry = registry
        self.host = Host(node_key, registry=registry)
        listen_host, listen_port = parse_addr(config.p2p.listen, "p2p.listen")
        try:
            bound_host, bound_port = await self.host.listen(listen_host, listen_port)
        except OSError as exc:
            raise ConfigError(f"p2p.listen {config.p2p.listen}: {exc.strerror}") from None
        endpoint = config.p2p.advertise or f"{bound_host}:{bound_port}"
        if endpoint.rpartition(":")[0].strip("[]") in ("0.0.0.0", "::"):
            raise ConfigError("p2p.listen is not dialable: set p2p.advertise to host:port")
        ctx = Context(
            config=config,
            home=home,
            db=db,
            store=store,
            metrics=ProverMetrics(registry),
            node_key=node_key,
            account=self.account,
            deployment=deployment,
            endpoint=endpoint,
        )
        self.ctx = ctx
        self.policy = StakedSigners([node_key.node_id])
        # Loopback contacts are exempt from the IP-prefix limits: no remote peer can be
        # reached at 127.0.0.0/8, so the exemption only matters for nodes on one machine.
        self.kad = KademliaService(
            self.host,
            KademliaConfig(exempt_loopback=True),
            policy=self.policy,
            table_path=home.table_path,
            advertise=[parse_addr(endpoint, "endpoint")],
        )
        ctx.kad = self.kad
        self.swarm = Swarm(self.host, store=store, importer=store, registry=registry)
        self.announcer = Announcer(ctx, self.policy)
        self.desk = DealDesk(ctx, on_activated=self.announcer.announce)
        self.host.set_handler(DEAL_PROTOCOL, self.desk.handle)
        self.follower = EventFollower(ctx)
        self.rounds = ProvingDriver(ctx, self.follower)
        self.upkeep = Upkeep(
            ctx, self.follower, self.rounds, self.announcer.forget, lambda: self.desk.in_flight
        )
        self.scrubber = Scrubber(ctx)
        bootstrap = [parse_peer(p) for p in config.p2p.bootstrap]
        await self.kad.start(bootstrap)
        self.announcer.start()
        if config.api.enabled:
            await self._start_api()
        self._tasks += [
            asyncio.create_task(self._chain_main(), name="prover chain"),
            asyncio.create_task(self.scrubber.run(), name="prover scrub"),
            asyncio.create_task(self._watch_loop_lag(), name="prover loop lag"),
        ]
        info = {
            "event": "ready",
            "pid": os.getpid(),
            "node_id": node_key.node_id.hex(),
            "address": ctx.address,
            "peer": f"{node_key.node_id.hex()}@{endpoint}",
            "p2p": endpoint,
            "api": self.api_url,
            "pieces": len(held),
        }
        home.write_run_info(info)
        event(log, logging.INFO, "started", **{k: v for k, v in info.items() if k != "event"})
        return info

    async def _start_api(self) -> None:
        host, port = parse_addr(self.config.api.listen, "api.listen")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"api.listen {host}:{port}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        bound = sock.getsockname()
        display = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.api_url = f"http://{display}:{bound[1]}"
        app = create_app(
            self.ctx,
            status=self.status,
            peers=self.peers,
            metrics=self.render_metrics,
            request_exit=self.request_exit,
        )
        server_config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", loop="none"
        )
        self._server = _EmbeddedServer(server_config)
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api")
        while not self._server.started and not self._server_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # uvicorn offers no event for "started"

    # ------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop everything started so far and release the resources (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stopped.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._server_task, 5)
        for part in ("announcer", "swarm", "kad", "host"):
            component = getattr(self, part, None)
            if component is not None:
                await component.close()
        if self._store is not None:
            self._store.close()
        if self._db is not None:
            self._db.close()
        self.home.clear_run_info()
        event(log, logging.INFO, "stopped")

    # ------------------------------------------------------------------ chain side

    async def _chain_main(self) -> None:
        ctx = self.ctx
        try:
            chain = await self._connect()
            await self._check_identity(chain)
            self._identified_at = chain.failures
            # From here on, also while the start-up below retries: a restart is noticed.
            self._tasks.append(
                asyncio.create_task(self._watch_identity(chain), name="prover chain identity")
            )
            await self._register(chain)
            head = await chain.retry(chain.ledger.current_block)
            chain.head = head
            await self._retry(self.rounds.resync_mirror, head)
            for row in ctx.db.pieces():
                root = bytes.fromhex(row.root)
                if row.state == "stored" and ctx.store.has(root):
                    self.announcer.announce(root)
        except (LocalError, ChainMismatch) as exc:  # configuration, account, wrong chain
            self.fatal = exc
            event(log, logging.CRITICAL, "fatal", error=str(exc))
            self.stopped.set()
            return
        last_head = -1
        delay = self.config.chain.retry_initial
        while True:
            try:
                await self._reidentify(chain)
                head = await chain.read_head()
                ctx.metrics.chain_head.set(head)
                if head < last_head:
                    event(log, logging.WARNING, "chain_went_back", head=head, last=last_head)
                    await self._check_identity(chain)  # a restarted devnet starts over
                    self.follower.rewind(head - ctx.params.period_blocks)
                    last_head = head
                if head != last_head and ctx.chain_reset is None:
                    await self.follower.catch_up(head)
                    if self.follower.mirror_stale:
                        await self.rounds.resync_mirror(head)
                    await self.rounds.tick(head)
                    await self.upkeep.tick(head)
                    last_head = head
                ctx.metrics.chain_up.set(1)
                delay = self.config.chain.retry_initial
                await asyncio.sleep(self.config.chain.poll_interval)
            except ChainUnavailable:
                ctx.metrics.chain_up.set(0)
                ctx.metrics.chain_errors.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.chain.retry_max)
            except Exception:
                log.exception("chain loop error; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.chain.retry_max)

    async def _reidentify(self, chain: Chain) -> None:
        """
        Check the chain's identity again if any call failed since the last check, here or in
        another task's retries: the failure may have been a restart (a devnet back empty).
        """
        if chain.failures != self._identified_at:
            self._identified_at = chain.failures
            await self._check_identity(chain)

    async def _watch_identity(self, chain: Chain) -> None:
        """
        Probe the endpoint on its own, so that an outage and a restart are noticed even
        while the chain loop waits on a transaction or a long call.
        """
        while True:
            try:
                with contextlib.suppress(ChainUnavailable):
                    await chain.read_head()
                if chain.up:
                    await self._reidentify(chain)
            except Exception:
                log.exception("chain identity check failed; retrying")
            await asyncio.sleep(self.config.chain.poll_interval)

    async def _watch_loop_lag(self) -> None:
        """Measure how late the event loop wakes up: a blocked loop delays proofs."""
        metrics = self.ctx.metrics
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            lag = time.monotonic() - before - LAG_PROBE_INTERVAL
            metrics.loop_lag.observe(lag)
            if lag > LAG_WARNING:
                event(log, logging.WARNING, "event_loop_blocked", seconds=lag)

    async def _retry(self, fn: Any, *args: Any) -> Any:
        delay = self.config.chain.retry_initial
        while True:
            try:
                return await fn(*args)
            except ChainUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.chain.retry_max)

    async def _connect(self) -> Chain:
        """A ledger client, once the endpoint answers with the deployment's chain id."""
        config = self.config.chain
        rpc = config.rpc_url or self.ctx.deployment.rpc_url
        tx_config = TxConfig(
            rpc_timeout=config.rpc_timeout,
            resubmit_after=config.resubmit_after,
            max_resubmits=config.max_resubmits,
            fee_bump=config.fee_bump,
        )
        delay = config.retry_initial
        while True:
            try:
                ledger = await asyncio.to_thread(
                    LedgerClient, rpc, self.ctx.deployment, self.account, tx_config=tx_config
                )
                break
            except ChainMismatch:
                raise
            except (*OUTAGE_ERRORS, LedgerError) as exc:
                event(log, logging.WARNING, "chain_connect_failed", rpc=rpc, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.retry_max)
        chain = Chain(ledger, config)
        self.ctx.chain = chain
        event(log, logging.INFO, "chain_connected", rpc=rpc, chain_id=self.ctx.deployment.chain_id)
        return chain

    async def _check_identity(self, chain: Chain) -> None:
        """Refuse to act on a chain other than the one our database describes."""
        ctx = self.ctx
        genesis = await chain.retry(chain.identity)
        deployed = await chain.retry(chain.market_deployed)
        known = ctx.db.get_meta(GENESIS_KEY)
        if known is None:
            ctx.db.set_meta(GENESIS_KEY, genesis)
            known = genesis
        reason = None
        if genesis != known:
            reason = f"the chain at the RPC URL was reset (genesis {genesis[:16]} != {known[:16]})"
        elif not deployed:
            reason = f"no market contract at {ctx.deployment.market} (chain restarted?)"
        if reason != ctx.chain_reset:
            event(
                log,
                logging.CRITICAL if reason else logging.INFO,
                "chain_reset" if reason else "chain_ok",
                reason=reason,
            )
        ctx.chain_reset = reason

    async def _register(self, chain: Chain) -> None:
        """Register and stake if needed; keep the registered endpoint current."""
        ctx = self.ctx
        ledger = chain.ledger
        node_id = ctx.node_key.node_id
        while True:
            try:
                info = await chain.call(ledger.provider, ctx.address)
                if info.status == ProviderStatus.NONE:
                    await self._stake_and_register(chain)
                elif info.node_id != node_id:
                    raise ConfigError(
                        f"{ctx.address} is registered with node id {info.node_id.hex()[:16]}, "
                        f"but this home's node key is {node_id.hex()[:16]}"
                    )
                elif info.status == ProviderStatus.WITHDRAWN:
                    raise ConfigError(f"{ctx.address} withdrew its stake; use a new account")
                elif info.endpoint != ctx.endpoint:
                    await chain.call(ledger.update_endpoint, ctx.endpoint)
                    event(log, logging.INFO, "endpoint_updated", endpoint=ctx.endpoint)
                ctx.provider = await chain.call(ledger.provider, ctx.address)
                return
            except ChainUnavailable:
                await asyncio.sleep(self.config.chain.retry_initial)

    async def _stake_and_register(self, chain: Chain) -> None:
        ctx = self.ctx
        ledger = chain.ledger
        stake = self.config.chain.stake
        if stake < ctx.params.min_stake:
            raise ConfigError(
                f"chain.stake {stake} is below the market's minimum stake {ctx.params.min_stake}"
            )
        balance = await chain.call(ledger.balance_of, ctx.address)
        if balance < stake:
            if not self.config.chain.devnet_faucet:
                raise ConfigError(
                    f"{ctx.address} holds {balance} tokens, registering needs {stake}: fund it "
                    "(or set chain.devnet_faucet = true on a devnet)"
                )
            await chain.call(ledger.faucet, stake - balance)
        if await chain.call(ledger.allowance, ctx.address) < stake:
            await chain.call(ledger.approve, stake)
        receipt = await chain.call(ledger.register, ctx.node_key.node_id, ctx.endpoint, stake)
        event(
            log, logging.INFO, "registered", stake=stake, endpoint=ctx.endpoint, tx=receipt.tx_hash
        )

    # ------------------------------------------------------------------ API callbacks

    def status(self) -> dict[str, Any]:
        ctx = self.ctx
        info = ctx.provider
        current = self.rounds.rounds.get(ctx.period) if ctx.chain is not None else None
        ask = self.announcer.ask
        return {
            "node_id": ctx.node_key.node_id.hex(),
            "address": ctx.address,
            "endpoint": ctx.endpoint,
            "api": self.api_url,
            "uptime_s": round(time.time() - self.started_at, 1),
            "registration": None
            if info is None
            else {
                "status": info.status.name.lower(),
                "stake": str(info.stake),
                "locked": str(info.locked),
                "free_stake": str(info.free_stake),
                "open_deals": info.open_deals,
                "exit_period": info.exit_period,
            },
            "chain": {
                **(ctx.chain.status() if ctx.chain is not None else {"up": False}),
                "chain_id": ctx.deployment.chain_id,
                "market": ctx.deployment.market,
                "reset": ctx.chain_reset,
            },
            "period": ctx.period,
            "taking_deals": ctx.taking_deals,
            "round": None
            if current is None
            else {
                "period": current.period,
                "state": current.state.value,
                "deadline_block": current.deadline_block,
                "attempts": current.attempts,
            },
            "storage": {
                "capacity": ctx.store.capacity,
                "stored_bytes": ctx.store.stored_bytes,
                "free_bytes": ctx.store.free_bytes(),
                "pieces": len(ctx.store.held()),
            },
            "ask": None
            if ask is None
            else {
                "price_per_gib_period": str(ask.price_per_gib_period),
                "collateral_per_gib": str(ask.collateral_per_gib),
                "free_bytes": ask.free_bytes,
                "issued_at": ask.issued_at,
            },
            "peers": len(self.host.connected_peers()),
            "announced_pieces": self.announcer.announced,
            "deals_in_progress": len(self.desk.in_flight),
            "scrub_found_bad": self.scrubber.found_bad,
            **summary_view(ctx.db),
        }

    def peers(self) -> dict[str, Any]:
        table = self.kad.core.table
        return {
            "connected": [p.hex() for p in self.host.connected_peers()],
            "routing_table": [
                {"node_id": c.node_id.hex(), "addrs": [f"{a.host}:{a.port}" for a in c.addrs]}
                for c in table.contacts()
            ],
            "staked_providers": self.announcer.staked_count,
        }

    def render_metrics(self) -> str:
        self.kad.update_metrics()
        return render_prometheus(self.registry)

    async def request_exit(self) -> dict[str, Any]:
        chain = self.ctx.require_chain()
        info = await chain.call(chain.ledger.provider, self.ctx.address)
        if info.status == ProviderStatus.ACTIVE:
            receipt = await chain.call(chain.ledger.request_exit)
            event(log, logging.INFO, "exit_requested", tx=receipt.tx_hash)
            info = await chain.call(chain.ledger.provider, self.ctx.address)
        self.ctx.provider = info
        return exit_report(info, self.ctx.params.unbonding_periods, self.ctx.period)


def exit_report(info: Any, unbonding: int, period: int) -> dict[str, Any]:
    """Where an exit stands: status, when the stake can be withdrawn, what blocks it."""
    withdrawable_from = info.exit_period + unbonding
    return {
        "status": info.status.name.lower(),
        "exit_period": info.exit_period,
        "withdrawable_from_period": withdrawable_from,
        "period": period,
        "open_deals": info.open_deals,
        "stake": str(info.stake),
    }


def print_ready(info: dict[str, Any]) -> None:
    """The readiness line for scripts: one JSON object on stdout."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
