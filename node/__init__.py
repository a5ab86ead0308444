"""The peer-to-peer layer: identity, encrypted transport, Kademlia DHT, pieces and swarm."""
