"""What an agent's shell environment is: the harness's, less every secret, plus the run's
few variables. Everything an agent can read from its shell starts here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sim.workspace import Workspace

_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_NOT_INHERITED = frozenset({"PS1", "PS2", "PROMPT_COMMAND"})


def scrubbed_env(
    base: Mapping[str, str], home: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A copy of `base` without secrets (names starting with ANTHROPIC_ or containing KEY,
    TOKEN, SECRET or PASSWORD, any case) or prompt settings; HOME=home, TERM=dumb; `extra` last."""
    env = {
        k: v
        for k, v in base.items()
        if not k.upper().startswith("ANTHROPIC_")
        and not any(w in k.upper() for w in _SECRET_WORDS)
        and k not in _NOT_INHERITED
    }
    env.update(HOME=str(home), TERM="dumb")
    env.update(extra or {})
    return env


def agent_env(base: Mapping[str, str], workspace: Workspace, agent: str) -> dict[str, str]:
    """The environment of an agent's shell: scrubbed of secrets, HOME its own directory."""
    return scrubbed_env(
        base,
        home=workspace.agent_dir(agent),
        extra={
            "SIM_AGENT": agent,
            "SIM_SHARED": str(workspace.shared),
            "SIM_LOCKS": str(workspace.locks_dir),
        },
    )
