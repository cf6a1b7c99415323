"""The tools a model can call, by the name the model uses."""

from __future__ import annotations

from sim.errors import ScenarioError
from sim.tools.base import Tool, ToolContext, ToolOutput
from sim.tools.bash import BashTool
from sim.tools.coordination import FinishTool, LockTool, UnlockTool
from sim.tools.editor import EditorTool
from sim.tools.messages import SendMessageTool, WaitForMessageTool

__all__ = ["Tool", "ToolContext", "ToolOutput", "build_tools"]


def _registry() -> dict[str, type]:
    return {
        "bash": BashTool,
        "str_replace_based_edit_tool": EditorTool,
        "lock": LockTool,
        "unlock": UnlockTool,
        "send_message": SendMessageTool,
        "wait_for_message": WaitForMessageTool,
        "finish": FinishTool,
    }


def build_tools(names: list[str]) -> dict[str, Tool]:
    """The tool objects for the names an agent may use, in the scenario's order."""
    registry = _registry()
    tools: dict[str, Tool] = {}
    for name in names:
        cls = registry.get(name)
        if cls is None:
            raise ScenarioError(f"tool {name!r} is not available; choose from {sorted(registry)}")
        tools[name] = cls()
    return tools
