"""The wire between the ECG front end and the host.

Frame format, host driver, front-end simulator and reference firmware. This package knows
nothing of the rest of the appliance: edge_app imports it, never the other way round.
"""
__version__ = "0.1.0"
