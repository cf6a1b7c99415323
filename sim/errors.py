"""The exceptions sim raises, in one place.

    SimError
    ├── ScenarioError        a scenario file or override is wrong (names file, key path, value, fix)
    ├── ShellError           a shell could not be started or used
    ├── ToolError            a tool call failed; goes back to the model as an is_error result
    │   ├── PathError        a path escapes the agent's directory and shared/
    │   ├── PolicyError      the command policy refused a command
    │   └── LockError        a lock could not be taken or released
    ├── ModelError           a model could not answer; ends that agent with reason `error`
    │   └── AuthError        the API rejected the key; ends the whole run
    └── RunError             a run could not be set up or finished
        └── IsolationError   isolation asked for cannot be had here (privilege, tools)

Every message names the object, the bad value and what would be right.
"""

from __future__ import annotations


class SimError(Exception):
    """Base of every error sim raises on purpose."""


class ScenarioError(SimError):
    """A scenario file, or a --set override, does not validate."""


class ShellError(SimError):
    """A shell could not be started, or died in a way a restart could not mend."""


class ToolError(SimError):
    """A tool call failed. The agent loop turns it into an `is_error` tool result."""


class PathError(ToolError):
    """A path lies outside the places an agent may touch."""


class PolicyError(ToolError):
    """The scenario's command policy refused a command; it did not run."""


class LockError(ToolError):
    """A lock could not be taken (timeout, deadlock) or released (not held)."""


class ModelError(SimError):
    """A model could not produce a response; the agent ends with reason `error`."""


class AuthError(ModelError):
    """The API refused the credentials; the whole run ends."""


class RunError(SimError):
    """A run could not be set up, or its run directory is unusable."""


class LogError(RunError, ValueError):
    """An event log with a bad line before its last (a crash can only tear the last one)."""


class IsolationError(RunError):
    """`isolation: users` or `network: false` cannot be had here: says what is missing."""
