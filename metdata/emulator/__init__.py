"""The Met emulator: a real HTTP server standing in for the Collection API and its image host.

See ``server.MetEmulator`` for in-process use and ``metdata fake-met`` for the command line.
"""

from metdata.emulator.server import EmulatorConfig, MetEmulator

__all__ = ["EmulatorConfig", "MetEmulator"]
