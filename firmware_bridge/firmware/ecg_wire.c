/* ecg_wire.c: see ecg_wire.h and docs/wire_protocol.md. */
#include "ecg_wire.h"

#include <string.h>

uint32_t ecg_crc32(const uint8_t *p, size_t n)
{
    /* CRC-32/ISO-HDLC, bitwise (swap in a table or the MCU's CRC unit if cycles matter). */
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

size_t ecg_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t w = 1, code_idx = 0;
    uint8_t code = 1;
    for (size_t r = 0; r < len; r++) {
        if (in[r] == 0) {
            out[code_idx] = code;
            code = 1;
            code_idx = w++;
        } else {
            out[w++] = in[r];
            if (++code == 0xFF) {
                out[code_idx] = code;
                code = 1;
                code_idx = w++;
            }
        }
    }
    out[code_idx] = code;
    return w;
}

size_t ecg_cobs_decode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t r = 0, w = 0;
    while (r < len) {
        uint8_t code = in[r];
        if (code == 0 || r + code > len)
            return (size_t)-1;
        for (size_t k = 1; k < code; k++) {
            if (in[r + k] == 0)
                return (size_t)-1;
            out[w++] = in[r + k];
        }
        r += code;
        if (code != 0xFF && r < len)
            out[w++] = 0;
    }
    return w;
}

static uint8_t *put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); return p + 2; }
static uint8_t *put32(uint8_t *p, uint32_t v) { p = put16(p, (uint16_t)v); return put16(p, (uint16_t)(v >> 16)); }
static uint8_t *put64(uint8_t *p, uint64_t v) { p = put32(p, (uint32_t)v); return put32(p, (uint32_t)(v >> 32)); }

/* payload[0..len) holds version, type, body: append the CRC, stuff into out, add the delimiter */
static size_t finish(uint8_t *payload, size_t len, uint8_t *out)
{
    put32(payload + len, ecg_crc32(payload, len));
    size_t w = ecg_cobs_encode(payload, len + 4, out);
    out[w++] = 0x00;
    return w;
}

size_t ecg_encode_data(uint8_t *out, uint32_t seq, uint64_t timestamp_us, uint8_t n,
                       const uint16_t *status, const int32_t *counts)
{
    static uint8_t payload[ECG_MAX_PAYLOAD];  /* not reentrant: call from one context */
    if (n == 0 || n > ECG_MAX_SAMPLES_PER_FRAME)
        return 0;
    uint8_t *p = payload;
    *p++ = ECG_WIRE_VERSION;
    *p++ = ECG_T_DATA;
    p = put32(p, seq);
    p = put64(p, timestamp_us);
    *p++ = n;
    for (unsigned i = 0; i < n; i++) {
        p = put16(p, status[i]);
        for (unsigned c = 0; c < ECG_N_CHANNELS; c++) {
            int32_t v = counts[i * ECG_N_CHANNELS + c];
            if (v > 8388607 || v < -8388608)
                return 0;
            uint32_t u = (uint32_t)v & 0xFFFFFFu;
            *p++ = (uint8_t)u;
            *p++ = (uint8_t)(u >> 8);
            *p++ = (uint8_t)(u >> 16);
        }
    }
    return finish(payload, (size_t)(p - payload), out);
}

size_t ecg_encode_device_info(uint8_t *out, const ecg_device_info_t *info)
{
    uint8_t payload[64 + 2 * ECG_MAX_RATES + ECG_N_CHANNELS];
    if (info->n_rates == 0 || info->n_rates > ECG_MAX_RATES || info->n_channels > ECG_N_CHANNELS)
        return 0;
    uint8_t *p = payload;
    *p++ = ECG_WIRE_VERSION;
    *p++ = ECG_T_DEVICE_INFO;
    *p++ = info->token;
    memcpy(p, info->device_id, 16);
    p += 16;
    *p++ = info->fw_major;
    *p++ = info->fw_minor;
    *p++ = info->fw_patch;
    *p++ = ECG_WIRE_VERSION;
    *p++ = info->streaming ? 1u : 0u;
    p = put16(p, info->rate_hz);
    *p++ = info->samples_per_frame;
    *p++ = info->n_rates;
    for (unsigned i = 0; i < info->n_rates; i++)
        p = put16(p, info->rates[i]);
    *p++ = info->gain;
    p = put32(p, info->vref_uv);
    p = put32(p, info->lsb_pv);
    p = put16(p, info->lead_off_mask);
    *p++ = info->n_channels;
    for (unsigned i = 0; i < info->n_channels; i++)
        *p++ = info->channel_map[i];
    return finish(payload, (size_t)(p - payload), out);
}

size_t ecg_encode_ack(uint8_t *out, uint8_t token, uint8_t command)
{
    uint8_t payload[2 + 2 + 4] = {ECG_WIRE_VERSION, ECG_T_ACK, token, command};
    return finish(payload, 4, out);
}

size_t ecg_encode_error(uint8_t *out, uint8_t token, uint8_t command, uint8_t code, const char *text)
{
    uint8_t payload[5 + 64 + 4] = {ECG_WIRE_VERSION, ECG_T_ERROR, token, command, code};
    size_t n = text ? strlen(text) : 0;
    if (n > 64)
        n = 64;
    memcpy(payload + 5, text, n);
    return finish(payload, 5 + n, out);
}

void ecg_rx_init(ecg_rx_t *rx) { memset(rx, 0, sizeof *rx); }

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) | ((uint32_t)get16(p + 2) << 16); }

int ecg_rx_byte(ecg_rx_t *rx, uint8_t byte, ecg_command_t *cmd)
{
    if (byte != 0) {
        if (rx->len < sizeof rx->buf)
            rx->buf[rx->len++] = byte;
        else
            rx->overflow = 1;
        return 0;
    }
    /* delimiter: try the frame collected so far */
    size_t len = rx->len;
    int overflow = rx->overflow;
    rx->len = 0;
    rx->overflow = 0;
    if (len == 0)
        return 0;                                   /* empty frame: a leading 0x00 */
    uint8_t p[sizeof rx->buf];
    size_t n = overflow ? (size_t)-1 : ecg_cobs_decode(rx->buf, len, p);
    if (n == (size_t)-1 || n < 7 || ecg_crc32(p, n - 4) != get32(p + n - 4) || p[0] != ECG_WIRE_VERSION) {
        rx->bad_frames++;
        return 0;
    }
    size_t body = n - 6;
    cmd->type = p[1];
    cmd->token = p[2];
    cmd->rate_hz = 0;
    switch (p[1]) {
    case ECG_T_GET_INFO:
    case ECG_T_START:
    case ECG_T_STOP:
        if (body == 1)
            return 1;
        break;
    case ECG_T_SET_RATE:
        if (body == 3) {
            cmd->rate_hz = get16(p + 3);
            return 1;
        }
        break;
    default:
        break;
    }
    rx->bad_frames++;
    return 0;
}

uint16_t ecg_ads1298_lead_off(uint32_t status24)
{
    uint8_t statp = (uint8_t)(status24 >> 12);      /* LOFF_STATP: IN8P..IN1P */
    uint8_t statn = (uint8_t)(status24 >> 4);       /* LOFF_STATN: IN8N..IN1N */
    uint16_t lo = 0;
    if (statn & 0x01u) lo |= ECG_LO_RA;             /* IN1N = RA */
    if (statp & 0x01u) lo |= ECG_LO_LA;             /* IN1P = LA */
    if (statp & 0x02u) lo |= ECG_LO_LL;             /* IN2P = LL */
    for (unsigned k = 0; k < 6; k++)                /* IN3P..IN8P = V1..V6 */
        if (statp & (1u << (k + 2)))
            lo |= (uint16_t)(ECG_LO_V1 << k);
    return lo;
}
