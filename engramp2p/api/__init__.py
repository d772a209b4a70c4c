"""The local control API: the agent's control-socket server and the Python clients that talk to it.

Only the clients are exported here; they import no trio until an ``AsyncClient`` is used, so the CLI
stays fast. The server lives in ``engramp2p.api.server`` and is imported by the agent.
"""

from engramp2p.api.client import AgentNotRunning, AsyncClient, Client, ClientError, control_path

__all__ = ["AgentNotRunning", "AsyncClient", "Client", "ClientError", "control_path"]
