"""The household as parents change it: where it is kept, the actions on it, and how
it travels (export/import). ``guardian.policy.household`` holds the pure model."""
