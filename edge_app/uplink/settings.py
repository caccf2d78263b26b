"""The uplink's settings: the validated [mqtt] section (MqttConfig).

Defined in edge_app/mqtt_settings.py, below the config loader that validates it (the loader must not import
the uplink: dependencies point one way); this module is the uplink's name for it.
"""
from edge_app.mqtt_settings import PRIORITIES, STRIP_MODES, MqttConfig

__all__ = ["MqttConfig", "PRIORITIES", "STRIP_MODES"]
