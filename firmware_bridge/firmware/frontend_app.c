/*
 * frontend_app.c: the ECG front end's application, board-independent (docs/wire_protocol.md, "Session").
 *
 * Answers GET_INFO / START / STOP / SET_RATE, turns every ADS1298 conversion into a sample record (status
 * word -> lead-off bits, 24-bit big-endian -> int32) and sends a DATA frame every rate/50 samples. At boot
 * it announces itself with an unsolicited DEVICE_INFO (token 0, preceded by a 0x00) so a connected host
 * knows the device reset. Everything hardware-specific is behind board.h.
 */
#include <string.h>

#include "board.h"
#include "ecg_wire.h"

#define FW_MAJOR 1
#define FW_MINOR 0
#define FW_PATCH 0

static const uint16_t RATES[] = {250, 500, 1000};

static uint8_t tx[ECG_MAX_WIRE + 1];
static uint16_t status[ECG_MAX_SAMPLES_PER_FRAME];
static int32_t counts[ECG_MAX_SAMPLES_PER_FRAME * ECG_N_CHANNELS];
static uint16_t rate_hz = 500;
static uint32_t seq;
static unsigned n_in_frame;
static uint64_t frame_t0;
static uint8_t streaming;

static unsigned samples_per_frame(void) { return rate_hz / 50u; }

static void send(size_t n)
{
    if (n)
        board_host_write(tx, n);
}

static void send_device_info(uint8_t token)
{
    ecg_device_info_t info;
    memset(&info, 0, sizeof info);
    info.token = token;
    board_device_id(info.device_id);
    info.fw_major = FW_MAJOR;
    info.fw_minor = FW_MINOR;
    info.fw_patch = FW_PATCH;
    info.streaming = streaming;
    info.rate_hz = rate_hz;
    info.samples_per_frame = (uint8_t)samples_per_frame();
    info.n_rates = (uint8_t)(sizeof RATES / sizeof RATES[0]);
    memcpy(info.rates, RATES, sizeof RATES);
    info.gain = 6;
    info.vref_uv = 2400000u;
    info.lsb_pv = 47684u;                         /* 2.4 V / 6 / 2^23 */
    info.lead_off_mask = 0x1FFu;                  /* RA, LA, LL, V1..V6 */
    info.n_channels = ECG_N_CHANNELS;
    for (unsigned i = 0; i < ECG_N_CHANNELS; i++)
        info.channel_map[i] = (uint8_t)i;         /* CH1..CH8 wired as I, II, V1..V6 */
    if (token == 0) {                             /* unsolicited: a 0x00 first ends any partial frame */
        tx[0] = 0x00;
        size_t n = ecg_encode_device_info(tx + 1, &info);
        send(n ? n + 1 : 0);
    } else {
        send(ecg_encode_device_info(tx, &info));
    }
}

static void on_command(const ecg_command_t *cmd)
{
    switch (cmd->type) {
    case ECG_T_GET_INFO:
        send_device_info(cmd->token);
        break;
    case ECG_T_START:
        if (!streaming) {
            seq = 0;
            n_in_frame = 0;
            streaming = 1;
            board_adc_start();
        }
        send(ecg_encode_ack(tx, cmd->token, cmd->type));
        break;
    case ECG_T_STOP:
        if (streaming) {
            board_adc_stop();
            streaming = 0;
        }
        send(ecg_encode_ack(tx, cmd->token, cmd->type));
        break;
    case ECG_T_SET_RATE:
        if (streaming)
            send(ecg_encode_error(tx, cmd->token, cmd->type, ECG_E_BUSY, "stop first"));
        else if (!board_adc_set_rate(cmd->rate_hz))
            send(ecg_encode_error(tx, cmd->token, cmd->type, ECG_E_BAD_ARGUMENT, "250,500,1000"));
        else {
            rate_hz = cmd->rate_hz;
            send(ecg_encode_ack(tx, cmd->token, cmd->type));
        }
        break;
    default:
        break;
    }
}

static void on_sample(const uint8_t raw[ADS1298_FRAME_BYTES], uint64_t t_us)
{
    if (!streaming)
        return;
    if (n_in_frame == 0)
        frame_t0 = t_us;
    uint32_t st = ((uint32_t)raw[0] << 16) | ((uint32_t)raw[1] << 8) | raw[2];
    status[n_in_frame] = ecg_ads1298_lead_off(st);
    for (unsigned c = 0; c < ECG_N_CHANNELS; c++) {
        const uint8_t *s = raw + 3 + 3 * c;
        int32_t v = (int32_t)(((uint32_t)s[0] << 16) | ((uint32_t)s[1] << 8) | s[2]);
        counts[n_in_frame * ECG_N_CHANNELS + c] = (v ^ 0x800000) - 0x800000;   /* sign-extend 24 -> 32 */
    }
    if (++n_in_frame == samples_per_frame()) {
        send(ecg_encode_data(tx, seq++, frame_t0, (uint8_t)n_in_frame, status, counts));
        n_in_frame = 0;
    }
}

int main(void)
{
    static ecg_rx_t rx;
    ecg_command_t cmd;
    uint8_t raw[ADS1298_FRAME_BYTES];
    uint64_t t_us;

    board_init();
    board_adc_set_rate(rate_hz);
    send_device_info(0);
    for (;;) {
        int b, busy = 0;
        while ((b = board_host_getc()) >= 0) {
            busy = 1;
            if (ecg_rx_byte(&rx, (uint8_t)b, &cmd))
                on_command(&cmd);
        }
        board_poll();
        /* at most one frame's worth per pass, so commands are answered even if the ADC runs ahead */
        for (unsigned k = 0; k < ECG_MAX_SAMPLES_PER_FRAME && board_adc_read(raw, &t_us); k++) {
            busy = 1;
            on_sample(raw, t_us);
        }
        if (!busy)
            board_idle();
    }
}
