"""`engramp2p top`: the live topology dashboard over the local agent's control socket.

One concept per module, data flowing down the list:

- ``shapes``: the data the agent serves (member rows, info, events) as bounded Structs, scrubbed of
  terminal control characters at the edge;
- ``source``: the ``TopSource`` interface; ``agent_source`` implements it over ``api.AsyncClient`` and
  ``demo`` over a seeded fake cluster (``engramp2p top --demo-data``);
- ``model``: the pure fold of snapshots, events and link failures, handing out immutable ``View``s;
- ``render``: pure ``View`` -> rich renderables, sized to the terminal (side panels plug in here);
- ``app``: the trio loop that polls, subscribes and renders in a worker thread.

Nothing is imported here, so ``import engramp2p.ui.shapes`` does not pull in rich or trio.
"""
