"""The signal chain shared by the device and by training (one source of truth).

Importing this package must stay cheap and free of daemon code: training imports it.
"""
