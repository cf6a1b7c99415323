"""`python -m sim report`: one self-contained HTML file, checked as text and in Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
from matplotlib.image import imread

from sim.runner import Run
from sim.scenario import validate_scenario
from tests.analysis_runs import real_run
from tests.conftest import run_cli, scenario_dict
from tests.synthetic import write_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic run with every kind of event, and its report made through the CLI."""
    run_dir = write_run(tmp_path_factory.mktemp("runs"), agents=6, turns=30, seed=5, name="r")
    out = run_dir.parent / "out" / "report.html"
    proc = run_cli("report", str(run_dir), "-o", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    return run_dir, out


def test_report_embeds_every_plot_and_every_agent(reported: tuple[Path, Path]) -> None:
    _, out = reported
    html = out.read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    agents = [f"agent-{i:02d}" for i in range(1, 7)]
    listed = re.findall(r'<li><a href="#agent-([^"]+)">', html)
    assert listed == agents
    assert re.findall(r'<details class="agent" id="agent-([^"]+)">', html) == agents
    assert "✉ from" in html and "deadlock" in html  # messages and deadlocks reach transcripts
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html


def test_report_of_a_real_run_defaults_into_the_run_directory(tmp_path: Path) -> None:
    run_dir = real_run(tmp_path, "quickstart")
    proc = run_cli("report", str(run_dir), timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = (run_dir / "report.html").read_text()
    assert "cat section.md &gt;&gt; &quot;$SIM_SHARED/report.md&quot;" in html
    assert html.count('src="data:image/png;base64,') == 5
    assert html.count('class="agent"') == 3


def test_report_of_a_missing_run_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("report", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "no such run directory" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("SIM_REQUIRE_CHROMIUM"):
            pytest.fail("Chromium is missing; .ci/run installs Debian's `chromium` package")
        pytest.skip(
            "Chromium is not installed here (.ci/run installs it: apt-get install chromium)"
        )
    return found


def headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,  # generous: other test processes share two cores
    )


def test_chromium_renders_the_plots_and_the_agent_list(
    reported: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = reported
    proc = headless(tmp_path, "--virtual-time-budget=10000", "--dump-dom", out.as_uri())
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The page's own check ran after load: every <img> decoded (naturalWidth > 0).
    assert 'data-plots-rendered="5"' in dom, dom[:500]
    assert '<p class="warning">' not in dom
    listing = re.search(r'<ul id="agent-list">(.*?)</ul>', dom, re.S)
    assert listing and len(re.findall(r"<li>", listing.group(1))) == 6
    # The check can fail: a plot whose PNG is damaged is counted out and flagged.
    broken = tmp_path / "broken.html"
    broken.write_text(out.read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    dom = headless(tmp_path, "--virtual-time-budget=10000", "--dump-dom", broken.as_uri()).stdout
    assert 'data-plots-rendered="4"' in dom and '<p class="warning">1 plot(s)' in dom
    shot = tmp_path / "report.png"
    proc = headless(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1280,2000",
        f"--screenshot={shot}",
        out.as_uri(),
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not a blank page


def test_report_of_a_run_that_failed_before_any_agent_started(tmp_path: Path) -> None:
    from analysis.report import write_report

    scenario = validate_scenario(scenario_dict(workspace={"setup": ["exit 3"]}))

    async def main() -> Path:
        return (await Run(scenario, runs_dir=tmp_path).execute()).run_dir

    html = write_report(trio.run(main)).read_text()
    assert html.count('src="data:image/png;base64,') == 5  # each plot says it has nothing
    assert "error (workspace.setup command" in html and 'class="agent"' not in html
