"""Stage 1, acquisition: ids (listing, search, the Open Access CSV), lookups into ``objects/``, and
``metdata plan``'s prices."""
