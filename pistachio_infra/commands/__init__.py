"""One module per CLI command group, loaded lazily by cli.py. Each command parses its options, calls one function
of the packages below and prints; no logic lives here.

May import anything of ours; nothing imports commands except cli.py."""
