"""
A discrete-event simulator of Depot's Kademlia network: the real sans-I/O core
(``node.kademlia.core``) in thousands of simulated nodes in one process, with one-way
latency, loss and churn. ``engine``: the event queue; ``network``: nodes, delivery and
churn; ``experiment``: the lookup benchmark (``scripts/bench_dht.py``).
"""
