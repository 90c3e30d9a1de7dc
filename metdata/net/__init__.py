"""Requests to a host: sessions with one deadline, the one fetch core, the per-host budget (pacing)
and the dispatcher that spends it. Imports only :mod:`metdata.core`."""
