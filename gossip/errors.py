"""Error types for user mistakes.

A user mistake (bad config value, unknown name, impossible request) raises one of these with a
one-line message that names the bad value and what is allowed. The command line turns them
into that one line on stderr and exit code 2. Bugs raise ordinary exceptions.
"""

from topologies.errors import TopologyError

__all__ = ["ConfigError", "DataError", "GossipError", "OutputError", "TopologyError"]


class GossipError(ValueError):
    """Base class of the simulator's user-facing errors."""


class ConfigError(GossipError):
    """A configuration key, value or combination that cannot be run."""


class DataError(GossipError):
    """A data folder that is missing or malformed."""


class OutputError(GossipError):
    """A file of a run or report that cannot be written: a folder that is not writable or not a
    folder, a read-only file system, a full disk. Nothing half-written is left behind."""
