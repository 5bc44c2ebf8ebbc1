"""Guardian: a home-network guardian that filters DNS to protect children online."""

__version__ = "0.1.0"
