"""The peer-to-peer layer: identities, encrypted transport, Kademlia DHT, piece pipeline and swarm."""
