"""The wire between the ECG front end and the host.

Frame format, host driver, front-end simulator and reference firmware. This package knows
nothing of the rest of the appliance: edge_app imports it, never the other way round.

- samples:   SampleBlock, CHANNELS, LEADS, ELECTRODES, derive_leads (what the driver hands up)
- protocol:  wire format v1 (docs/wire_protocol.md): messages, encode/decode, FrameDecoder
- driver:    FrontEndDriver(port).blocks() -> SampleBlock | None, with gaps, resets, reconnects
- simulator: FrontEndSimulator / ecg-frontend-sim, a replaying front end on a pty with faults
- firmware/: reference C for the device side of the protocol
"""
__version__ = "0.1.0"
