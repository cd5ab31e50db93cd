"""The MrFlow daemon: the staged-generation engine, its upscaler, models, server and tray."""

__version__ = "0.1.0"
