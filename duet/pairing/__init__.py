"""How an owner and a scientist find each other: the signaling client (``signaling.py``), the
owner's doorway (``doorway.py``: its open session, each offer checked and answered), the owner's
signed answer (``owner_proof.py``), the loopback file (``loopback.py``), the arguments both calls
share (``arguments.py``), and the signaling server an owner starts as its child (``server.py``).
What follows an open data channel (admission, the handshake) is the sessions'."""
