"""llamafleet's policy rules (plain functions) and their CrossGuard pack."""
