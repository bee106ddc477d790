"""How an owner and a scientist find each other: for now, the signaling server an owner starts
for itself (``server.py``). The rest of the pairing flow (signaling client, loopback proof,
offer and answer) is to move here from ``network.py`` and ``transport/``."""
