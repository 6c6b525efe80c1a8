"""srlane: a training system for the SRLane lane detector."""

__version__ = "0.1.0"
