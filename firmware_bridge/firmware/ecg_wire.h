/*
 * ecg_wire: device side of the front-end wire protocol, version 1 (docs/wire_protocol.md).
 *
 * Reference C for the microcontroller next to an ADS1298-class ADC: builds DATA, DEVICE_INFO, ACK and
 * ERROR frames (COBS + CRC-32, 0x00 delimiter) and parses the host's commands byte by byte.
 * No allocation, no HAL: the caller owns the buffers and the UART. C99, little- or big-endian MCU.
 * Checked against the Python implementation by tests/test_firmware_c_reference.py.
 */
#ifndef ECG_WIRE_H
#define ECG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define ECG_WIRE_VERSION 1u

enum {
    ECG_T_DATA = 0x01, ECG_T_DEVICE_INFO = 0x02, ECG_T_ACK = 0x03, ECG_T_ERROR = 0x04,
    ECG_T_GET_INFO = 0x10, ECG_T_START = 0x11, ECG_T_STOP = 0x12, ECG_T_SET_RATE = 0x13
};
enum { ECG_E_BAD_VERSION = 1, ECG_E_UNKNOWN_COMMAND = 2, ECG_E_BAD_ARGUMENT = 3, ECG_E_BUSY = 4,
       ECG_E_INTERNAL = 5 };

#define ECG_N_CHANNELS 8u
#define ECG_SAMPLE_RECORD_BYTES 26u              /* status u16 + 8 x int24 */
#define ECG_MAX_SAMPLES_PER_FRAME 40u
#define ECG_MAX_PAYLOAD (2u + 13u + ECG_MAX_SAMPLES_PER_FRAME * ECG_SAMPLE_RECORD_BYTES + 4u)
/* worst case on the wire: COBS overhead + delimiter */
#define ECG_MAX_WIRE (ECG_MAX_PAYLOAD + ECG_MAX_PAYLOAD / 254u + 2u)
#define ECG_MAX_RATES 8u

/* status bits (per sample): 1 = electrode off */
enum { ECG_LO_RA = 1u << 0, ECG_LO_LA = 1u << 1, ECG_LO_LL = 1u << 2, ECG_LO_V1 = 1u << 3,
       ECG_LO_V2 = 1u << 4, ECG_LO_V3 = 1u << 5, ECG_LO_V4 = 1u << 6, ECG_LO_V5 = 1u << 7,
       ECG_LO_V6 = 1u << 8 };

typedef struct {
    uint8_t token;                 /* 0 = unsolicited (boot / reset) */
    char device_id[16];            /* ASCII, NUL-padded */
    uint8_t fw_major, fw_minor, fw_patch;
    uint8_t streaming;             /* 0/1 */
    uint16_t rate_hz;
    uint8_t samples_per_frame;     /* rate / 50 */
    uint8_t n_rates;
    uint16_t rates[ECG_MAX_RATES];
    uint8_t gain;
    uint32_t vref_uv;
    uint32_t lsb_pv;               /* one count in picovolts: vref / gain / 2^23 */
    uint16_t lead_off_mask;        /* electrodes with a comparator */
    uint8_t n_channels;
    uint8_t channel_map[ECG_N_CHANNELS];   /* 0..7 = I, II, V1..V6 */
} ecg_device_info_t;

typedef struct {
    uint8_t type;                  /* ECG_T_GET_INFO, _START, _STOP, _SET_RATE */
    uint8_t token;
    uint16_t rate_hz;              /* SET_RATE only */
} ecg_command_t;

typedef struct {
    uint8_t buf[32];               /* commands are at most 11 bytes on the wire */
    size_t len;
    uint8_t overflow;
    uint32_t bad_frames;           /* CRC / framing / length / version / type rejects */
} ecg_rx_t;

uint32_t ecg_crc32(const uint8_t *p, size_t n);
size_t ecg_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* returns decoded length, or (size_t)-1 if the input is not valid COBS */
size_t ecg_cobs_decode(const uint8_t *in, size_t len, uint8_t *out);

/* Frame builders: write COBS(payload) + 0x00 into out (ECG_MAX_WIRE bytes is always enough);
 * return the number of bytes to send, 0 on a bad argument. */
size_t ecg_encode_data(uint8_t *out, uint32_t seq, uint64_t timestamp_us, uint8_t n,
                       const uint16_t *status, const int32_t *counts);  /* counts: n x 8, row-major */
size_t ecg_encode_device_info(uint8_t *out, const ecg_device_info_t *info);
size_t ecg_encode_ack(uint8_t *out, uint8_t token, uint8_t command);
size_t ecg_encode_error(uint8_t *out, uint8_t token, uint8_t command, uint8_t code, const char *text);

/* Feed received bytes one at a time; returns 1 when *cmd holds a complete, valid command. */
void ecg_rx_init(ecg_rx_t *rx);
int ecg_rx_byte(ecg_rx_t *rx, uint8_t byte, ecg_command_t *cmd);

/* ADS1298 helper: 24-bit status word (1100 | LOFF_STATP | LOFF_STATN | GPIO) -> lead-off bits, for
 * the wiring CH1 = LA-RA (I), CH2 = LL-RA (II), CH3..CH8 = V1..V6 - WCT. Adapt to your board. */
uint16_t ecg_ads1298_lead_off(uint32_t status24);

#endif
