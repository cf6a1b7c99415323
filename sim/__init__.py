"""sim: run many agents side by side, each with its own persistent bash, and log everything."""

from sim.errors import SimError
from sim.scenario import Scenario, load_scenario

__all__ = ["Scenario", "SimError", "load_scenario"]
