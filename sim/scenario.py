"""Scenario files: the YAML schema, loading, `--set` overrides and readable errors.

A scenario is parsed and validated here, once; the rest of sim gets frozen, typed objects.
Every error names the file, the key path, the bad value and what would be right, and no bad
file produces a traceback (`ScenarioError` carries the whole message).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sim.errors import ScenarioError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# Tool names a scenario may list; the Claude issue's tools are named as Anthropic names them.
TOOL_NAMES = (
    "bash",
    "str_replace_based_edit_tool",
    "lock",
    "unlock",
    "send_message",
    "wait_for_message",
    "finish",
)
DEFAULT_TOOLS = ("bash", "str_replace_based_edit_tool", "lock", "unlock", "finish")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    max_turns: int = Field(50, gt=0, description="model turns per agent")
    wall_time: float = Field(600.0, gt=0, description="seconds for the whole run")
    command_timeout: float = Field(30.0, gt=0, description="seconds per shell command")
    max_output_bytes: int = Field(
        30_000, ge=256, description="output kept per command (head and tail)"
    )
    max_tokens: int | None = Field(
        None,
        gt=0,
        description="tokens per agent (input, cache reads and writes, output) before it stops",
    )
    budget_usd: float | None = Field(None, gt=0, description="USD per agent (Claude)")
    run_budget_usd: float | None = Field(None, gt=0, description="USD for the whole run (Claude)")
    max_rounds: int | None = Field(
        None, gt=0, description="rounds before the run stops (schedulers round_robin and rounds)"
    )


class LockSettings(_Strict):
    lease: float | None = Field(
        None, gt=0, description="seconds a lock may be held before it is reported lock_overdue"
    )
    break_overdue: bool = Field(
        False, description="take an overdue lock away from its holder (needs a lease)"
    )

    @model_validator(mode="after")
    def _break_needs_lease(self) -> LockSettings:
        if self.break_overdue and self.lease is None:
            raise ValueError("break_overdue needs a lease: set locks.lease to a number of seconds")
        return self


class Api(_Strict):
    """How Claude agents call the Messages API (one client per run, shared by the agents)."""

    max_retries: int = Field(2, ge=0, le=10, description="SDK retries of 408/409/429/5xx/529")
    max_retry_wait: float = Field(
        60.0, gt=0, description="seconds at most to wait before a retry, whatever retry-after says"
    )
    timeout: float = Field(
        600.0, gt=0, description="seconds to connect, and for each read of a response (httpx)"
    )
    max_output_tokens: int = Field(8192, gt=0, description="`max_tokens` of each request")
    cache_ttl: Literal["5m", "1h"] = Field("5m", description="prompt cache lifetime")
    context_window: int | None = Field(
        None, ge=1000, description="tokens; default: the model's window from sim/pricing.py"
    )


class Workspace(_Strict):
    shared: dict[str, str] = Field(
        default_factory=dict, description="files to seed into shared/: path -> content"
    )
    agents: dict[str, str] = Field(
        default_factory=dict, description="files to seed into every agent's directory"
    )
    setup: list[str] = Field(
        default_factory=list, description="shell commands run in shared/ before agents start"
    )

    @field_validator("shared", "agents")
    @classmethod
    def _relative_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for path in files:
            parts = Path(path).parts
            if Path(path).is_absolute() or ".." in parts or not parts:
                raise ValueError(
                    f"file path {path!r} must be relative and stay inside its directory "
                    "(no leading '/', no '..')"
                )
        return files


class Resources(_Strict):
    """Limits for each agent; null lifts one. rlimits bind each process of the agent,
    `memory_mb` and `pids` the agent's whole process tree (a cgroup, where the machine has
    one). A per-agent `resources` overrides only the keys it names."""

    cpu_seconds: int | None = Field(3600, gt=0, description="CPU seconds per process")
    address_space_mb: int | None = Field(8192, gt=0, description="virtual memory per process")
    processes: int | None = Field(1024, gt=0, description="processes of the agent's Unix user")
    file_size_mb: int | None = Field(1024, gt=0, description="largest file a process may write")
    open_files: int | None = Field(1024, ge=32, description="open files per process")
    memory_mb: int | None = Field(2048, gt=0, description="memory of the agent's whole tree")
    pids: int | None = Field(512, gt=0, description="processes of the agent's whole tree")


class Commands(_Strict):
    """Which bash commands may run: none that matches a `deny` regex, and, when `allow` is
    given, only those that match one of its regexes (Python `re.search` on the command)."""

    deny: list[str] = Field(default_factory=list, description="regexes a command must not match")
    allow: list[str] | None = Field(None, description="if set, a command must match one")

    @field_validator("deny", "allow")
    @classmethod
    def _compiles(cls, patterns: list[str] | None) -> list[str] | None:
        for i, pattern in enumerate(patterns or []):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {i} {pattern!r} is not a valid regular expression ({exc}); "
                    "escape special characters such as ( [ * + ? with a backslash"
                ) from None
        return patterns


class AgentSpec(_Strict):
    name: str = Field(description="lowercase letters, digits, '_'; replicas become name-1..name-N")
    replicas: int = Field(1, ge=1, le=1024)
    model: str = Field(
        "scripted", description="'scripted', or a Claude model name such as claude-sonnet-4-5"
    )
    system: str = ""
    task: str = ""
    tools: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOLS))
    params: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]] | None = Field(
        None, description="scripted model: tool calls in order, e.g. - bash: 'echo hi'"
    )
    policy: str | None = Field(
        None, description="scripted model: a Python policy as package.module:function"
    )
    network: bool = Field(True, description="false: a network namespace with loopback only")
    resources: Resources | None = Field(None, description="overrides of the scenario's limits")
    commands: Commands | None = Field(None, description="more deny rules, or its own allow list")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                f"agent name {name!r} must start with a lowercase letter and hold only "
                "lowercase letters, digits and '_' (at most 31 characters)"
            )
        return name

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        for tool in tools:
            if tool not in TOOL_NAMES:
                raise ValueError(f"unknown tool {tool!r}; choose from {', '.join(TOOL_NAMES)}")
        return tools

    @field_validator("steps")
    @classmethod
    def _one_tool_per_step(cls, steps: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, step in enumerate(steps or []):
            if len(step) != 1 or next(iter(step)) not in TOOL_NAMES:
                raise ValueError(
                    f"step {i} is {step!r}; each step is one tool call such as "
                    "`- bash: 'echo hi'`, `- lock: counter.txt` or `- finish: done`"
                )
        return steps

    @field_validator("policy")
    @classmethod
    def _policy_ref(cls, policy: str | None) -> str | None:
        if policy is not None and not re.match(r"^[\w.]+:\w+$", policy):
            raise ValueError(f"policy {policy!r} must look like package.module:function")
        return policy

    @model_validator(mode="after")
    def _scripted_needs_a_script(self) -> AgentSpec:
        if self.model == "scripted":
            if (self.steps is None) == (self.policy is None):
                raise ValueError("a scripted agent needs exactly one of `steps` or `policy`")
        elif self.steps is not None or self.policy is not None:
            raise ValueError(
                f"`steps` and `policy` are for model: scripted, not model: {self.model}"
            )
        return self

    @property
    def is_claude(self) -> bool:
        return self.model.startswith("claude")


class AgentConfig(_Strict):
    """One concrete agent: a spec with its replica name resolved."""

    name: str
    spec: AgentSpec


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 0
    limits: Limits = Field(default_factory=Limits)  # type: ignore[arg-type]  # all fields default
    scheduler: Literal["concurrent", "round_robin", "rounds"] = "concurrent"
    workspace: Workspace = Field(default_factory=Workspace)
    locks: LockSettings = Field(default_factory=LockSettings)  # type: ignore[arg-type]
    detect_clobbers: bool = Field(
        True, description="scan shared/ after every command to log file_write and clobber events"
    )
    agents: list[AgentSpec] = Field(min_length=1)
    done_when: str | None = Field(
        None, description="shell condition run in shared/ between turns; true ends the run"
    )
    base_url: str | None = Field(None, description="Anthropic-compatible endpoint for Claude")
    api: Api = Field(default_factory=Api)  # type: ignore[arg-type]  # all fields default

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("base_url must be an http(s) URL such as http://127.0.0.1:8080")
        return url

    isolation: Literal["none", "users"] = Field(
        "none", description="users: a Unix user per agent (needs root); none: the harness's user"
    )
    resources: Resources = Field(default_factory=Resources)  # type: ignore[arg-type]
    commands: Commands = Field(default_factory=Commands)  # type: ignore[arg-type]  # all fields default

    def resources_for(self, spec: AgentSpec) -> Resources:
        """The scenario's limits with the agent's overrides (only the keys it set) applied."""
        if spec.resources is None:
            return self.resources
        given = {k: getattr(spec.resources, k) for k in spec.resources.model_fields_set}
        return self.resources.model_copy(update=given)

    @model_validator(mode="after")
    def _unique_agent_names(self) -> Scenario:
        seen: set[str] = set()
        for agent in self.expanded_agents():
            if agent.name in seen:
                raise ValueError(f"two agents are named {agent.name!r}; give each a unique name")
            seen.add(agent.name)
        return self

    @model_validator(mode="after")
    def _rounds_need_a_round_scheduler(self) -> Scenario:
        if self.limits.max_rounds is not None and self.scheduler == "concurrent":
            raise ValueError(
                "limits.max_rounds counts rounds, which only the round_robin and rounds "
                "schedulers have; set scheduler: rounds (or round_robin), or drop max_rounds"
            )
        return self

    def expanded_agents(self) -> list[AgentConfig]:
        out = []
        for spec in self.agents:
            if spec.replicas == 1:
                out.append(AgentConfig(name=spec.name, spec=spec))
            else:
                out.extend(
                    AgentConfig(name=f"{spec.name}-{i}", spec=spec)
                    for i in range(1, spec.replicas + 1)
                )
        return out

    def to_yaml(self) -> str:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~10x faster
        return yaml.dump(
            self.model_dump(mode="json"), Dumper=dumper, sort_keys=False, allow_unicode=True
        )


# ---------------------------------------------------------------------------------------------
# Loading


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] | None = Scenario
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return sorted(model.model_fields) if model else []


def _explain(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _format_loc(loc)
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(loc))
            lines.append(f"{source}: {where}: unknown key; allowed keys here: {allowed}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = repr(got) if not isinstance(got, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{source}: {where}: {msg} (got {shown})")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`limits.max_turns=5` -> (['limits', 'max_turns'], 5). The value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ScenarioError(f"--set {text!r}: write it as KEY.PATH=VALUE, e.g. limits.max_turns=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    node: Any = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(
                    f"--set {text}: {'.'.join(path[:i]) or 'top'} is a list of {len(node)}; "
                    f"use an index from 0 to {len(node) - 1} (got {part!r})"
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ScenarioError(
                f"--set {text}: {'.'.join(path[:i])} is a value ({node!r}), not a mapping or list"
            )


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last one
    silently, so `name: x` ... `name: y` ran as y with no word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """`:LINE:COL: not valid YAML: PROBLEM`, on one line, to follow a file's name."""
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
    return f"{where}: not valid YAML: {problem}"


def load_scenario(path: Path | str, overrides: list[str] = ()) -> Scenario:  # type: ignore[assignment]
    """Read, override and validate a scenario file. Raises ScenarioError with every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save the scenario as UTF-8"
        ) from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}{yaml_problem(exc)}") from exc
    if data is None:
        raise ScenarioError(f"{path}: the file is empty; a scenario needs at least name and agents")
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{path}: a scenario is a YAML mapping with keys such as name and agents "
            f"(got {type(data).__name__})"
        )
    for text_override in overrides:
        keys, value = parse_override(text_override)
        apply_override(data, keys, value, text_override)
    # A bad key or value may come from a --set rather than the file: name both.
    source = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    return validate_scenario(data, source)


def validate_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_explain(source, exc)) from None


def json_schema() -> dict[str, Any]:
    return Scenario.model_json_schema()
