"""The shard format: what `python -m pack` writes and `hrnet_fast.data` reads, defined once.

`manifest` owns the directory's metadata (`manifest.json`, timm's `_info.json`); `samples` owns
the tar members (KEY.jpg + KEY.cls: how keys and labels are spelled and grouped). Packer and
loader both import these, and this package imports only hrnet_fast's leaf modules (errors,
atomic), so the two sides cannot drift apart and `hrnet_fast` never needs `pack`.
"""
