"""A Runway API simulator: a real aiohttp server on loopback, for tests and keyless demos.

sim = RunwaySimulator(api_key="key_test", config=SimulatorConfig(pending_seconds=0.05))
base_url = await sim.start()
sim.faults.add(Fault(route="create", kind="status", status=503))
...
await sim.stop()
"""

from .config import SimulatorConfig
from .faults import Fault, FaultPlan
from .server import RunwaySimulator

__all__ = ["Fault", "FaultPlan", "RunwaySimulator", "SimulatorConfig"]
