"""MrFlow for Krita: fill canvases and selections with MrFlow staged generation."""
