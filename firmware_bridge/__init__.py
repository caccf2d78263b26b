"""The wire between the ECG front end and the host.

Frame format, host driver, front-end simulator and reference firmware. This package knows
nothing of the rest of the appliance: edge_app imports it, never the other way round.

- leads:     CHANNELS, LEADS, ELECTRODES, LEAD_ELECTRODES/ELECTRODE_LEADS: the one definition for the appliance
- records:   read_wfdb_uv, the one WFDB reader (units from the header -> microvolts; missing samples NaN)
- samples:   SampleBlock, derive_leads (what the driver hands up)
- protocol:  wire format v1 (docs/wire_protocol.md): codes, messages, encode/decode (the one module of the format);
             cobs: its byte stuffing; protocol_errors: why a frame is refused (both re-exported by protocol)
- frame_decoder: FrameDecoder, a byte stream in -> the messages of every intact frame out (DecoderStats)
- driver:    FrontEndDriver(port).blocks() -> SampleBlock | None, with gaps, resets, reconnects
             handshake: the session opening (STOP, GET_INFO, SET_RATE, START), HandshakeError;
             sequencer: where each DATA frame goes in the stream (gaps, duplicates, implausible jumps)
- simulator: FrontEndSimulator, a replaying front end on a pty; simulator_record: the record it replays;
             simulator_pty: its end of the cable; simulator_faults: its faults; simulator_cli: ecg-frontend-sim
- firmware/: reference C for the device side of the protocol
"""
__version__ = "0.1.0"
