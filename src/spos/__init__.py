"""spos: Single Path One-Shot neural architecture search."""

__version__ = "0.1.0"
