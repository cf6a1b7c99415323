"""analysis: run directories as pandas DataFrames, plots, notebooks and an HTML report.

    import analysis
    run = analysis.load_run("runs/<run-id>")
    runs = analysis.load_runs("runs/*counter_race")

Reads run directories only (the event log is the contract); never imports trio or pexpect.
The frames and their columns: analysis/README.md, or help(analysis.RunFrames).
"""

from analysis.run import RunFrames, RunLoadError, load_run, load_runs

__all__ = ["RunFrames", "RunLoadError", "load_run", "load_runs"]
