#!/usr/bin/env python3
"""
Compile the ledger's Vyper contracts into contracts/artifacts/<Name>.json.

The artifacts (ABI, creation and runtime bytecode, compiler settings and the hash of every
source file) are committed: daemons deploy and call the contracts from them and never
compile at run time. Run this after changing anything in contracts/src; ``--check``
compiles afresh and fails if the committed artifacts differ (tests/contracts/
test_artifacts.py runs it).

Usage:
    .venv/bin/python scripts/build_contracts.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import vyper
from vyper.compiler import compile_from_file_input
from vyper.compiler.input_bundle import FilesystemInputBundle
from vyper.compiler.settings import OptimizationLevel, Settings

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "contracts" / "src"
OUT = ROOT / "contracts" / "artifacts"
CONTRACTS = ("Token", "StorageMarket")
EVM_VERSION = "prague"


def source_hashes() -> dict[str, str]:
    """sha256 of every Vyper source the deployable contracts are built from."""
    files = sorted(p for p in SRC.glob("*.vy*") if p.is_file())
    files += sorted(p for p in (SRC / "interfaces").glob("*.vy*"))
    return {
        p.relative_to(SRC).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def compile_contract(name: str) -> dict[str, Any]:
    """Compile ``contracts/src/<name>.vy`` into its artifact dictionary."""
    bundle = FilesystemInputBundle([SRC])
    file_input = bundle.load_file(Path(f"{name}.vy"))
    settings = Settings(evm_version=EVM_VERSION, optimize=OptimizationLevel.GAS)
    out = compile_from_file_input(
        file_input,
        input_bundle=bundle,
        settings=settings,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    runtime = out["bytecode_runtime"]
    return {
        "contractName": name,
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "deployedBytecode": runtime,
        "deployedSize": (len(runtime) - 2) // 2,
        "compiler": {"vyper": vyper.__version__, "evmVersion": EVM_VERSION, "optimize": "gas"},
        "sources": source_hashes(),
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact as committed: stable key order, one trailing newline."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--check", action="store_true", help="fail if committed artifacts differ from a compile"
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name in CONTRACTS:
        artifact = compile_contract(name)
        path = OUT / f"{name}.json"
        text = render(artifact)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        write_atomically(path, text)
        print(f"{name}: {artifact['deployedSize']} bytes runtime -> {path.relative_to(ROOT)}")
    if stale:
        print(
            f"stale artifacts: {', '.join(stale)}; run scripts/build_contracts.py", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
