"""A Runway API simulator: a real aiohttp server on loopback, for tests and keyless demos.

sim = RunwaySimulator(api_key="key_test", config=SimulatorConfig(pending_seconds=0.05))
base_url = await sim.start()
sim.faults.add(Fault(route="create", kind="status", status=503))
...
await sim.stop()
"""

from videogen_server.simulator.config import SimulatorConfig
from videogen_server.simulator.faults import Fault, FaultPlan
from videogen_server.simulator.server import RunwaySimulator

__all__ = ["Fault", "FaultPlan", "RunwaySimulator", "SimulatorConfig"]
