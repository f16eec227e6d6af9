"""How runs behave when things go wrong: dead run workers, leaked pool slots, waits for a slot."""
