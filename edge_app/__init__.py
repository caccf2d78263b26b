"""The ECG triage appliance's daemon. A triage aid, not a diagnosis."""
__version__ = "0.1.0"
