"""Which bash commands an agent may run: deny regexes and an optional allow list.

The scenario's `commands` apply to every agent; an agent's own `commands` add deny rules, and
its `allow`, when given, replaces the scenario's. A command is refused when it matches any
deny rule, or when an allow list exists and it matches none of it (`re.search`, so anchor a
pattern with ^ to match from the start). A refused command never reaches the shell: the model
gets an error naming the rule, and a `command_denied` event records it.

This is a guard rail for experiments, not a security boundary: a pattern sees the command
text, not what it does (`eval`, a script written first, base64...). Isolation comes from
Unix users, namespaces and limits (sim.isolation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.errors import PolicyError
from sim.events import CommandDenied
from sim.scenario import AgentConfig, Commands, Scenario

if TYPE_CHECKING:
    from sim.tools.base import ToolContext


@dataclass(frozen=True)
class Rule:
    where: str  # the scenario key it came from, e.g. agents[1].commands.deny[0]
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class CommandPolicy:
    deny: tuple[Rule, ...] = ()
    allow: tuple[Rule, ...] | None = None
    allow_where: str = "commands.allow"

    @classmethod
    def for_agent(cls, scenario: Scenario, agent: AgentConfig) -> CommandPolicy:
        index = next(i for i, spec in enumerate(scenario.agents) if spec is agent.spec)
        own = agent.spec.commands or Commands(deny=[], allow=None)
        deny = _rules("commands.deny", scenario.commands.deny)
        deny += _rules(f"agents[{index}].commands.deny", own.deny)
        allow_where = f"agents[{index}].commands.allow"
        allow = own.allow
        if allow is None:
            allow_where, allow = "commands.allow", scenario.commands.allow
        return cls(deny, None if allow is None else _rules(allow_where, allow), allow_where)

    def violation(self, command: str) -> tuple[str, str, str] | None:
        """(rule, pattern, message) if `command` may not run, else None."""
        refused = "command refused by the harness's command policy: it matches"
        for rule in self.deny:
            if rule.pattern.search(command):
                shown = rule.pattern.pattern
                return (
                    rule.where,
                    shown,
                    (
                        f"{refused} the deny rule {rule.where} {shown!r}. Nothing was run; do it "
                        "another way that this rule allows, or leave it out."
                    ),
                )
        if self.allow is not None and not any(r.pattern.search(command) for r in self.allow):
            allowed = ", ".join(repr(r.pattern.pattern) for r in self.allow) or "(empty)"
            return (
                self.allow_where,
                "",
                (
                    f"{refused} none of the patterns of the allow list {self.allow_where}: "
                    f"{allowed}. Nothing was run; use a command that matches one of them."
                ),
            )
        return None

    def enforce(self, ctx: ToolContext, command: str) -> None:
        """Raise PolicyError (and log `command_denied`) if `command` may not run."""
        found = self.violation(command)
        if found is None:
            return
        rule, pattern, message = found
        ctx.events.emit(
            CommandDenied(turn=ctx.turn, command=command, rule=rule, pattern=pattern), ctx.agent
        )
        raise PolicyError(message)


def _rules(where: str, patterns: list[str]) -> tuple[Rule, ...]:
    return tuple(Rule(f"{where}[{i}]", re.compile(p)) for i, p in enumerate(patterns))
