"""A provider in its own process, for the kill test: ``python provider_proc.py DIR RATE``.

Serves every piece in the FilePieceStore DIR at RATE bytes/s per peer (0: unlimited);
prints ``READY <node id hex> <port>`` and serves until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from node.identity import NodeKey
from node.swarm.config import SwarmConfig
from node.swarm.service import Swarm
from node.swarm.store import FilePieceStore
from node.transport import Host


async def main(directory: str, rate: float) -> None:
    host = Host(NodeKey.generate())
    _, port = await host.listen("127.0.0.1", 0)
    Swarm(host, FilePieceStore(Path(directory)), config=SwarmConfig(peer_upload_rate=rate or None))
    print(f"READY {host.node_id.hex()} {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
