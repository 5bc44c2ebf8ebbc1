"""The block lists' lifecycle, above the pure policy: subscriptions (the config's and the
rule packs' public lists), their status file, the downloads (aiohttp, fsync, in a child
process), refresh jobs, local sources, the compiler, and the ListService that loads,
recompiles and swaps the matcher in for the daemon. policy/ only matches what these produce.
"""
