"""Installs the Krita plugin and sets up the daemon."""
