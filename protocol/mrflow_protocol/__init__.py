"""The MrFlow wire protocol: sans-I/O messages over msgpack. Depends on msgpack only."""
