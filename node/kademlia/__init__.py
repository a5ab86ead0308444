"""
Kademlia DHT (Maymounkov & Mazières 2002) with signed, stake-bound provider records.

- ``messages``: the wire messages; ``records``: provider record signing and verification;
- ``routing``: k-buckets, replacement caches, IP-prefix limits; ``storage``: the record and
  value store with its limits; ``lookup``: iterative (and S/Kademlia disjoint) lookups;
- ``core``: the sans-I/O protocol node that ties them together; ``service``: its asyncio
  adapter over ``node.transport``; ``snapshot``: routing table persistence.

Design and measurements: docs/node-dht.md.
"""
