"""The block lists' lifecycle, above the pure policy: subscriptions (the config's and the
rule packs' public lists), their status file, the downloads (aiohttp, fsync, in a child
process), refresh jobs and local sources. policy/ only matches what these produce.
"""
