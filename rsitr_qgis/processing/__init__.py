"""Processing provider ``rsitr``."""
