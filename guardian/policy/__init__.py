"""The policy core: list formats, the compiled domain matcher, rule packs and decisions."""
