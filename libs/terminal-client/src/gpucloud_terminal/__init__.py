"""gpucloud_terminal: the terminal wire protocol every hop speaks (browser or CLI <->
gateway <-> terminal-gateway <-> node agent) and a small client for it.

`protocol` is pure (standard library only), so the portal's JavaScript and the CLI can
mirror it line by line; `client` adds a WebSocket connection on top (websockets only, no
platformkit). docs/terminal.md is the prose version of both.
"""

__version__ = "0.1.0"
