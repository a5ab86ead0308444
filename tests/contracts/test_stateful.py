"""
A stateful property test of the whole market (brownie's Hypothesis state machine): random
sequences of register, top up, accept, prove, miss (periods passing unproven), report,
declare loss, settle, exit and withdraw, with these invariants checked after every step:

- tokens are conserved: every balance plus the market's holdings is what was minted, and
  the market holds exactly the stakes plus the open deals' remaining escrow;
- each provider's lock is the unspent collateral of its open deals, and stake locked by a
  deal never leaves (withdraw only succeeds with no open deal);
- no period of a deal is ever paid twice (settled ranges are disjoint and inside the deal);
- a fault is never reported twice;
- every settlement moves exactly what contracts/spec/accounting.py says (settle_and_check).
"""

import random

from brownie.exceptions import VirtualMachineError
from brownie.test.stateful import state_machine
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from ledger_helpers import (
    MAX_UINT,
    TOKEN,
    Piece,
    build_proofs,
    mine,
    proposal,
    settle_and_check,
    signed,
    to_window,
)

N_PROVIDERS = 3
N_CLIENTS = 2


def reason(exc):
    return getattr(exc, "revert_msg", None) or str(exc)


# Actions and their weights (repeats). One rule draws the action: Hypothesis 6.27's
# stateful runner disables a random subset of rules in every run (swarm testing), which with
# a dozen rules and a small example budget leaves most runs exercising one or two of them;
# an action argument keeps every run varied. "tick" moves to the next period and plays it:
# reports of the previous period, proofs and settlements, as the drawn bits decide.
ACTIONS = (
    "tick",
    "tick",
    "tick",
    "tick",
    "accept",
    "accept",
    "accept",
    "accept",
    "register",
    "top_up",
    "prove",
    "report",
    "settle",
    "declare_loss",
    "exit",
    "withdraw",
)


class Market:
    st_action = st.integers(0, len(ACTIONS) - 1)
    st_a = st.integers(0, 255)
    st_b = st.integers(0, 255)
    st_c = st.integers(0, 2**16 - 1)

    def __init__(self, ledger):
        self.ledger = ledger
        self.market, self.token = ledger.market, ledger.token
        self.providers = list(ledger.accounts[1 : 1 + N_PROVIDERS])
        self.clients = list(ledger.accounts[1 + N_PROVIDERS : 1 + N_PROVIDERS + N_CLIENTS])
        self.reporter = ledger.accounts[1 + N_PROVIDERS + N_CLIENTS]
        self.active = [*self.providers, *self.clients, self.reporter]
        self.idle_balance = sum(
            int(self.token.balanceOf(a)) for a in ledger.accounts if a not in self.active
        )
        self.minted = int(self.token.totalSupply())
        rng = random.Random(7)
        sizes = [1, 1024, 1500, 3 * 1024, 4 * 1024 + 3, 7 * 1024]
        self.pieces = [Piece.random(size, rng) for size in sizes]
        self.by_root = {p.root: p for p in self.pieces}
        for account in self.providers + self.clients:
            self.token.approve(self.market, MAX_UINT, {"from": account})

    def setup(self):
        self.deals = []
        self.paid_ranges = {}
        self.closed = set()
        self.reported = set()
        self.rng = random.Random(0)  # proposal nonces; the chain is reverted between runs

    def _avoid_period_start(self):
        """Mine a block if the next one starts a period, so that a view read now and a
        transaction sent now see the same period (and a proof is not sent in a seed block)."""
        web3 = self.ledger.web3
        if (web3.eth.block_number + 1 - int(self.market.genesis())) % int(
            self.market.period_blocks()
        ) == 0:
            mine(web3, 1)

    # ------------------------------------------------------------- the rules

    def initialize_providers(self, st_c):
        """Every run starts with registered providers, so that short runs still trade."""
        for i in range(N_PROVIDERS):
            self.act_register(i, 150 + 30 * ((st_c >> (4 * i)) % 16))

    def rule_act(self, st_action, st_a, st_b, st_c):
        action = ACTIONS[st_action]
        provider = st_a % N_PROVIDERS
        if action == "tick":
            self.act_tick(st_c)
        elif action == "register":
            self.act_register(provider, 50 + st_c % 350)
        elif action == "top_up":
            self.act_top_up(provider, 1 + st_c % 100)
        elif action == "accept":
            self.act_accept(
                provider,
                client=st_b % N_CLIENTS,
                piece=st_b % len(self.pieces),
                periods=1 + st_c % 5,
                collateral=st_c % 41,
                price=(st_c >> 8) % 21,
            )
        elif action in ("settle", "declare_loss"):
            getattr(self, f"act_{action}")(st_c)
        else:
            getattr(self, f"act_{action}")(provider)

    # ------------------------------------------------------------- actions

    def act_register(self, provider, stake):
        p = self.providers[provider]
        try:
            self.market.register(
                bytes(11) + bytes([provider + 1]) + bytes(20), "h:1", stake * TOKEN, {"from": p}
            )
        except VirtualMachineError as exc:
            assert reason(exc) in {"registry: already registered", "registry: stake below minimum"}

    def act_top_up(self, provider, stake):
        p = self.providers[provider]
        try:
            self.market.top_up(stake * TOKEN, {"from": p})
        except VirtualMachineError as exc:
            assert reason(exc) == "registry: not a provider"

    def act_accept(self, provider, *, client, piece, periods, collateral, price):
        p, c = self.providers[provider], self.clients[client]
        prop = proposal(
            self.ledger,
            c,
            p,
            self.pieces[piece],
            price=price * TOKEN,
            periods=periods,
            collateral=collateral * TOKEN,
            rng=self.rng,
        )
        try:
            tx = self.market.accept_deal(prop.as_tuple(), signed(self.ledger, c, prop), {"from": p})
        except VirtualMachineError as exc:
            assert reason(exc) in {
                "registry: provider not active",
                "registry: stake too low for collateral",
            }
            return
        self.deals.append(int(tx.return_value))

    def act_prove(self, provider):
        p = self.providers[provider]
        web3 = self.ledger.web3
        self._avoid_period_start()
        period = int(self.market.current_period())
        if int(self.market.proving_state(p)[2]) == 0:
            return
        proofs = build_proofs(web3, self.market, p.address, self.by_root, period)
        try:
            self.market.submit_proof(proofs, {"from": p})
        except VirtualMachineError as exc:
            assert reason(exc) == "proving: period already proven"

    def act_tick(self, bits):
        """Go to the next period; report the previous one, prove this one and settle, per
        provider or deal as the bits say (a cleared prove bit is a missed period)."""
        period = int(self.market.current_period()) + 1
        to_window(self.ledger.web3, self.market, period, offset=1 + bits % 3)
        for i in range(N_PROVIDERS):
            if bits >> (2 + i) & 1:
                self.act_report(i)
        for i in range(N_PROVIDERS):
            if bits >> (5 + i) & 1:
                self.act_prove(i)
        for k, deal_id in enumerate(self.deals):
            if deal_id not in self.closed and bits >> (8 + k % 8) & 1:
                self.act_settle(k)

    def act_report(self, provider):
        p = self.providers[provider]
        self._avoid_period_start()
        period = int(self.market.current_period()) - 1
        if period < 0:
            return
        bounty = int(self.market.fault_bounty(p, period))
        try:
            tx = self.market.report_fault(p, period, {"from": self.reporter})
        except VirtualMachineError as exc:
            assert bounty == 0
            assert reason(exc) in {
                "proving: fault already reported",
                "proving: period was proven",
                "proving: nothing was challenged",
                "proving: outside the report window",
            }
            return
        assert tx.events["FaultReported"]["bounty"] == bounty
        key = (p.address, period)
        assert key not in self.reported
        self.reported.add(key)
        try:
            self.market.report_fault(p, period, {"from": self.reporter})
            raise AssertionError("a fault was reported twice")
        except VirtualMachineError as exc:
            assert reason(exc) in {
                "proving: fault already reported",
                "proving: outside the report window",
            }

    def act_settle(self, k):
        if not self.deals:
            return
        deal_id = self.deals[k % len(self.deals)]
        step = settle_and_check(self.ledger, deal_id, self.reporter)
        if step and step.to_period > step.from_period:
            self.paid_ranges.setdefault(deal_id, []).append((step.from_period, step.to_period))

    def act_declare_loss(self, k):
        if not self.deals:
            return
        deal_id = self.deals[k % len(self.deals)]
        provider = self.market.deal(deal_id)[1]
        try:
            self.market.declare_loss(deal_id, {"from": provider})
        except VirtualMachineError as exc:
            assert reason(exc) in {
                "deals: loss already declared",
                "deals: deal ends before a loss would take effect",
                "proving: too many retirements this period",
            }

    def act_exit(self, provider):
        try:
            self.market.request_exit({"from": self.providers[provider]})
        except VirtualMachineError as exc:
            assert reason(exc) == "registry: not an active provider"

    def act_withdraw(self, provider):
        p = self.providers[provider]
        before = self.market.providers(p)
        try:
            self.market.withdraw({"from": p})
        except VirtualMachineError as exc:
            assert reason(exc) in {
                "registry: exit not requested",
                "registry: still unbonding",
                "registry: deals still open",
                "market: pieces still challenged",
            }
            return
        # Locked stake never leaves: a withdrawal only happens with nothing locked.
        assert before[2] == 0 and before[3] == 0

    # ------------------------------------------------------------- invariants

    def _open_deals(self):
        """Records of the deals not yet closed (closed ones never change again)."""
        records = {}
        for deal_id in self.deals:
            if deal_id in self.closed:
                continue
            d = self.market.deal(deal_id)
            if d[11]:
                self.closed.add(deal_id)
            else:
                records[deal_id] = d
        return records

    def invariant(self):
        open_deals = self._open_deals()
        records = {p.address: self.market.providers(p) for p in self.providers}
        # Tokens are conserved, and the market holds exactly stakes plus open escrow.
        market = int(self.token.balanceOf(self.market))
        held = sum(int(self.token.balanceOf(a)) for a in self.active) + self.idle_balance
        assert held + market == self.minted
        escrow = sum(
            int(d[2]) * (int(d[6]) - max(int(d[9]), int(d[5]))) for d in open_deals.values()
        )
        assert market == sum(int(r[1]) for r in records.values()) + escrow
        # Each lock is the unspent collateral of the provider's open deals.
        locked = dict.fromkeys(records, 0)
        count = dict.fromkeys(records, 0)
        for d in open_deals.values():
            locked[d[1]] += int(d[3]) - int(d[4])
            count[d[1]] += 1
        for address, r in records.items():
            assert (int(r[2]), int(r[3])) == (locked[address], count[address])
        # No period of a deal was paid twice, nor outside the deal.
        for deal_id, ranges in self.paid_ranges.items():
            periods = [q for lo, hi in ranges for q in range(lo, hi)]
            assert len(periods) == len(set(periods))
            start = int(self.market.deal(deal_id)[5])
            assert all(start <= q < int(self.market.deal_stop(deal_id)) for q in periods)


def test_market_state_machine(ledger):
    state_machine(
        Market,
        ledger,
        settings={
            "max_examples": 20,
            "stateful_step_count": 30,
            "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow],
            # Runs are slow (real transactions): generate fresh examples only, and shrink
            # one if it fails.
            "database": None,
            "phases": [Phase.generate, Phase.shrink],
        },
    )
