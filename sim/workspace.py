"""The run directory and the workspace inside it, and the rules for paths agents may touch.

    runs/<run-id>/
      scenario.yaml      the resolved scenario (overrides applied)
      meta.json          versions, seed, start, end, status
      events.jsonl       the event log
      workspace/
        agents/<name>/   each agent's own directory (its HOME and starting cwd)
        shared/          the common directory; shared/.locks/ holds the lock files

Run ids are `YYYYmmdd-HHMMSS-ffffff-<scenario>`: they sort by start time, and the directory
is made with mkdir (never reused), so two runs started in the same microsecond still differ
by a suffix.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.errors import PathError, RunError

LOCKS_DIRNAME = ".locks"


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]+", "-", text).strip("-")[:40] or "run"


def new_run_dir(runs_dir: Path, scenario_name: str) -> Path:
    """Create and return a fresh `runs_dir/<run-id>/`. Raises RunError if it cannot."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{runs_dir}: cannot create the runs directory ({exc.strerror})") from exc
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    base = f"{stamp}-{_slug(scenario_name)}"
    for n in range(1000):
        path = runs_dir / (base if n == 0 else f"{base}.{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"{runs_dir}: could not find a free run id near {base}")


class Workspace:
    """Paths of one run directory, and path confinement for agents."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.root = run_dir / "workspace"
        self.shared = self.root / "shared"
        self.agents_root = self.root / "agents"
        self.locks_dir = self.shared / LOCKS_DIRNAME
        self.events_path = run_dir / "events.jsonl"
        self.meta_path = run_dir / "meta.json"
        self.scenario_path = run_dir / "scenario.yaml"

    def create(self, agent_names: list[str]) -> None:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        for name in agent_names:
            self.agent_dir(name).mkdir(parents=True, exist_ok=True)

    def agent_dir(self, name: str) -> Path:
        return self.agents_root / name

    def seed(self, directory: Path, files: dict[str, str]) -> None:
        for rel, content in files.items():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")

    def write_meta(self, meta: dict[str, Any]) -> None:
        # Write-then-rename so a crash never leaves a half-written meta.json.
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.meta_path)

    def read_meta(self) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{self.meta_path}: cannot read the run's meta.json ({exc})") from exc
        return meta

    def confine(self, agent: str, path: str, cwd: Path | None = None) -> Path:
        """Resolve `path` (absolute, or relative to `cwd`, default the agent's directory) and
        return it if it lies inside the agent's own directory or shared/; raise PathError
        otherwise. Symlinks are resolved first, so a link pointing outside is an escape."""
        own = self.agent_dir(agent).resolve()
        shared = self.shared.resolve()
        base = cwd if cwd is not None else own
        resolved = (base / path).resolve()
        for allowed in (own, shared):
            if resolved == allowed or resolved.is_relative_to(allowed):
                return resolved
        raise PathError(
            f"{path!r} resolves to {resolved}, outside your directory ({own}) and the shared "
            f"directory ({shared}); use a path inside one of those"
        )

    def shared_relative(self, path: Path) -> str | None:
        """The path relative to shared/ if it is inside shared/, else None."""
        shared = self.shared.resolve()
        resolved = path.resolve()
        if resolved.is_relative_to(shared):
            return str(resolved.relative_to(shared))
        return None
