"""The vocabulary and pure functions every stage shares: the record schema, statuses, targets, search
queries, imaging, counts and figures. No dataset root, no network."""
