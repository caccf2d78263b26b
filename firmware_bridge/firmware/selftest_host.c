/*
 * Host-side self-test of ecg_wire.c: prints the frames of the documented test vectors as hex and
 * parses command frames read as hex lines on stdin. tests/test_firmware_c_reference.py compiles it
 * and compares every line with the Python implementation. Build: cc -std=c99 ecg_wire.c selftest_host.c
 */
#include <stdio.h>
#include <string.h>

#include "ecg_wire.h"

static void hex(const char *name, const uint8_t *p, size_t n)
{
    printf("%s", name);
    for (size_t i = 0; i < n; i++)
        printf(" %02x", p[i]);
    printf("\n");
}

int main(void)
{
    static uint8_t out[ECG_MAX_WIRE];
    size_t n;

    printf("crc32 %08x\n", (unsigned)ecg_crc32((const uint8_t *)"123456789", 9));

    uint8_t seq254[254];
    for (int i = 0; i < 254; i++)
        seq254[i] = (uint8_t)(i + 1);
    n = ecg_cobs_encode(seq254, sizeof seq254, out);
    hex("cobs254", out, n);

    const uint16_t status[2] = {0x0000, ECG_LO_LA};
    const int32_t counts[2][ECG_N_CHANNELS] = {
        {0, 1, -1, 8388607, -8388608, 1000, -1000, 123456},
        {21000, -21000, 256, -256, 65536, -65536, 2, -2}};
    n = ecg_encode_data(out, 1, 20000, 2, status, &counts[0][0]);
    hex("data", out, n);

    /* a full 40-sample frame with a deterministic pattern (checked by decoding in Python) */
    static uint16_t st40[40];
    static int32_t c40[40][ECG_N_CHANNELS];
    uint32_t x = 12345;
    for (int i = 0; i < 40; i++) {
        st40[i] = (uint16_t)(i % 7 == 0 ? ECG_LO_V6 | ECG_LO_RA : 0);
        for (int c = 0; c < 8; c++) {
            x = x * 1103515245u + 12345u;
            c40[i][c] = (int32_t)((x >> 8) & 0xFFFFFFu) - 8388608;
        }
    }
    n = ecg_encode_data(out, 0xFFFFFFFFu, 0x0123456789ABCDEFull, 40, st40, &c40[0][0]);
    hex("data40", out, n);

    ecg_device_info_t info;
    memset(&info, 0, sizeof info);
    info.token = 1;
    memcpy(info.device_id, "ECGFE-0001", 10);
    info.fw_major = 1; info.fw_minor = 2; info.fw_patch = 3;
    info.streaming = 0;
    info.rate_hz = 500;
    info.samples_per_frame = 10;
    info.n_rates = 3;
    info.rates[0] = 250; info.rates[1] = 500; info.rates[2] = 1000;
    info.gain = 6;
    info.vref_uv = 2400000;
    info.lsb_pv = 47684;
    info.lead_off_mask = 0x1FF;
    info.n_channels = 8;
    for (int i = 0; i < 8; i++)
        info.channel_map[i] = (uint8_t)i;
    n = ecg_encode_device_info(out, &info);
    hex("info", out, n);

    n = ecg_encode_ack(out, 2, ECG_T_START);
    hex("ack", out, n);
    n = ecg_encode_error(out, 4, ECG_T_SET_RATE, ECG_E_BAD_ARGUMENT, "rate");
    hex("error", out, n);

    printf("lead_off %03x\n", ecg_ads1298_lead_off(0xC00000u | (0x81u << 12) | (0x01u << 4)));

    /* command parser: hex bytes on stdin, any line structure */
    ecg_rx_t rx;
    ecg_rx_init(&rx);
    unsigned b;
    ecg_command_t cmd;
    while (scanf("%2x", &b) == 1) {
        if (ecg_rx_byte(&rx, (uint8_t)b, &cmd))
            printf("cmd %02x %u %u\n", cmd.type, cmd.token, cmd.rate_hz);
    }
    printf("bad_frames %u\n", (unsigned)rx.bad_frames);
    return 0;
}
