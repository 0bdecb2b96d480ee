"""blacksoil: open agentic infrastructure.

Serve tokens to agents, run them safely, learn from what they did, share accelerators.
"""

__version__ = "0.1.0"
