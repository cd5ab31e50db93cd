"""`mrflow tray`: a system-tray icon that shows the daemon's state and controls it.

`state` (what to show) and `controller` (the daemon connection) have no Qt in them; `icon` and
`app` are the thin PySide6 layer.
"""
