"""The shard format: what `python -m pack` writes and `hrnet_fast.data` reads, defined once.

`manifest` owns the directory's metadata (`manifest.json`, timm's `_info.json`). Both packer and
loader import it, and this package imports only hrnet_fast's leaf modules (errors, atomic), so
the two sides cannot drift apart and `hrnet_fast` never needs `pack`.
"""
