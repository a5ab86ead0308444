"""
Pieces: the data pipeline between a file and the pieces that deals are made on.

encrypt (``crypto``) -> erasure-code or replicate (``erasure``, ``modes``, ``stripes``) ->
commit (``merkle``) -> layers and proofs (``layer``) -> signed manifest (``manifest``);
``prepare`` runs the whole way in, ``reassemble`` the way back. ``layout`` holds the
geometry every step shares. docs/pieces.md is the full description.

Import from the modules (``from node.pieces.prepare import prepare_file``): this package
imports nothing itself, so that worker processes load only what they run.
"""
