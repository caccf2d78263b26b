/*
 * Board layer for QEMU's mps2-an385 (ARM MPS2 FPGA, Cortex-M3, 25 MHz): the front end under emulation.
 *
 *   UART0 (CMSDK APB UART, 0x40004000)  host link (QEMU: first -serial, e.g. a pty)
 *   UART1 (0x40005000)                  bench fixture: "off V2" / "on V2" / "on all" lines unplug and
 *                                       replug electrodes of the emulated ADS1298 (answers "ok <mask>")
 *   SysTick (25 MHz core clock)         1 ms tick + sub-ms counter = device clock in us
 *   ADS1298                             emulated: converts a real ECG excerpt (ecg_excerpt.c) to counts at
 *                                       the set rate, paced by the device clock, with lead-off status bits
 *
 * Why an emulated ADC instead of a data file over the UART: the application code above board.h is then
 * exactly what runs on hardware, including the ADS1298 status-word decoding and 24-bit sign extension.
 */
#include <string.h>

#include "../board.h"
#include "../ecg_excerpt.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

/* CMSDK APB UART */
#define UART0 0x40004000u
#define UART1 0x40005000u
#define UART_DATA(b) REG((b) + 0x000u)
#define UART_STATE(b) REG((b) + 0x004u)
#define UART_CTRL(b) REG((b) + 0x008u)
#define UART_BAUDDIV(b) REG((b) + 0x010u)
#define UART_STATE_TXFULL 1u
#define UART_STATE_RXFULL 2u
#define UART_INT(b) REG((b) + 0x00Cu)           /* INTSTATUS / INTCLEAR */
#define UART_CTRL_TXEN 1u
#define UART_CTRL_RXEN 2u
#define UART_CTRL_RXINTEN 8u
#define UART_INT_RX 2u
#define NVIC_ISER0 REG(0xE000E100u)
#define IRQ_UART0_RX 0u                          /* mps2-an385: UARTn RX = IRQ 2n */
#define IRQ_UART1_RX 2u

/* SysTick */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define CORE_HZ 25000000u
#define TICKS_PER_MS (CORE_HZ / 1000u)

static volatile uint32_t ms_ticks;

void SysTick_Handler(void) { ms_ticks++; }

uint64_t board_now_us(void)
{
    uint32_t ms, val;
    do {
        ms = ms_ticks;
        val = SYST_CVR;
    } while (ms != ms_ticks);                 /* the tick fired in between: read again */
    return (uint64_t)ms * 1000u + (TICKS_PER_MS - 1u - val) / (CORE_HZ / 1000000u);
}

/* Received bytes go into a ring from the RX interrupt, so none is lost while the main loop is busy
 * sending a frame (the UART holds one byte only). Single producer (ISR), single consumer (main loop). */
typedef struct {
    volatile uint8_t buf[256];
    volatile uint8_t head, tail;              /* uint8_t indices wrap at 256 by themselves */
    volatile uint32_t overruns;
} rx_ring_t;

static rx_ring_t rx_host, rx_fixture;

static void uart_rx_isr(uint32_t base, rx_ring_t *r)
{
    while (UART_STATE(base) & UART_STATE_RXFULL) {
        uint8_t c = (uint8_t)UART_DATA(base);
        if ((uint8_t)(r->head + 1u) == r->tail)
            r->overruns++;                    /* ring full: the byte is lost (and counted) */
        else
            r->buf[r->head++] = c;
    }
    UART_INT(base) = UART_INT_RX;
}

void UART0_RX_Handler(void) { uart_rx_isr(UART0, &rx_host); }
void UART1_RX_Handler(void) { uart_rx_isr(UART1, &rx_fixture); }

static int ring_get(rx_ring_t *r)
{
    if (r->tail == r->head)
        return -1;
    return r->buf[r->tail++];
}

static void uart_init(uint32_t base, uint32_t baud)
{
    UART_BAUDDIV(base) = CORE_HZ / baud;      /* QEMU ignores the baud rate; real silicon does not */
    UART_CTRL(base) = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
}

static void uart_putc(uint32_t base, uint8_t c)
{
    while (UART_STATE(base) & UART_STATE_TXFULL)
        ;
    UART_DATA(base) = c;
}

void board_host_write(const uint8_t *p, size_t n)
{
    while (n--)
        uart_putc(UART0, *p++);
}

int board_host_getc(void) { return ring_get(&rx_host); }

void board_device_id(char id[16])
{
    memset(id, 0, 16);
    memcpy(id, "QEMU-AN385-0001", 15);
}

/* ------------------------------------------------------------------------------- emulated ADS1298 */

#define LSB_PV 47684                          /* 2.4 V / 6 / 2^23, as reported in DEVICE_INFO */
#define COUNT_MAX 8388607

static uint16_t adc_rate = 500;
static uint8_t adc_running;
static uint64_t adc_next_us;                  /* device time of the next conversion */
static uint64_t adc_pos_us;                   /* position in the patient's signal (advances while converting) */
static uint16_t electrodes_off;               /* bit i = electrode i (RA, LA, LL, V1..V6), set by the fixture */

int board_adc_set_rate(uint16_t rate_hz)
{
    if (rate_hz != 250 && rate_hz != 500 && rate_hz != 1000)
        return 0;
    adc_rate = rate_hz;
    return 1;
}

void board_adc_start(void)
{
    adc_running = 1;
    adc_next_us = board_now_us() + 1000000u / adc_rate;
}

void board_adc_stop(void) { adc_running = 0; }

/* microvolts -> 24-bit count, rounded to nearest (no ties occur: 10^6 uv / 47684 is never x.5) */
static int32_t uv_to_count(int32_t uv)
{
    int64_t num = (int64_t)uv * 1000000;
    int64_t q = (num >= 0 ? num + LSB_PV / 2 : num - LSB_PV / 2) / LSB_PV;
    return q > COUNT_MAX ? COUNT_MAX : q < -COUNT_MAX - 1 ? -COUNT_MAX - 1 : (int32_t)q;
}

/* ADS1298 status word for the electrodes that are off: 1100 | LOFF_STATP | LOFF_STATN | GPIO, wired as
 * CH1 = LA-RA, CH2 = LL-RA, CH3..8 = V1..V6 - WCT (the inverse of ecg_ads1298_lead_off). */
static uint32_t status_word(uint16_t off)
{
    uint32_t statp = 0, statn = 0;
    if (off & 1u) statn |= 0x01u;                               /* RA = IN1N */
    if (off & 2u) statp |= 0x01u;                               /* LA = IN1P */
    if (off & 4u) statp |= 0x02u;                               /* LL = IN2P */
    for (unsigned k = 0; k < 6; k++)                            /* V1..V6 = IN3P..IN8P */
        if (off & (8u << k))
            statp |= 1u << (k + 2);
    return 0xC00000u | (statp << 12) | (statn << 4);
}

/* channels (I, II, V1..V6) an off electrode drives to the rail: it floats, the lead-off current pulls it */
static uint8_t railed_channels(uint16_t off)
{
    uint8_t ch = 0;
    if (off & 1u) ch |= 0xFFu;                                  /* RA: I, II and the WCT */
    if (off & 2u) ch |= 0x01u | 0xFCu;                          /* LA: I and the WCT */
    if (off & 4u) ch |= 0x02u | 0xFCu;                          /* LL: II and the WCT */
    ch |= (uint8_t)(((off >> 3) & 0x3Fu) << 2);                 /* Vk: its own channel */
    return ch;
}

int board_adc_read(uint8_t raw[ADS1298_FRAME_BYTES], uint64_t *t_us)
{
    if (!adc_running || board_now_us() < adc_next_us)
        return 0;
    uint32_t idx = (uint32_t)((adc_pos_us * ecg_excerpt_fs / 1000000u) % ecg_excerpt_len);
    uint32_t st = status_word(electrodes_off);
    uint8_t railed = railed_channels(electrodes_off);
    raw[0] = (uint8_t)(st >> 16);
    raw[1] = (uint8_t)(st >> 8);
    raw[2] = (uint8_t)st;
    for (unsigned c = 0; c < 8; c++) {
        int32_t v = (railed & (1u << c)) ? COUNT_MAX : uv_to_count(ecg_excerpt_uv[idx][c]);
        uint32_t u = (uint32_t)v & 0xFFFFFFu;                   /* big-endian 24-bit, as the ADS1298 sends */
        raw[3 + 3 * c] = (uint8_t)(u >> 16);
        raw[4 + 3 * c] = (uint8_t)(u >> 8);
        raw[5 + 3 * c] = (uint8_t)u;
    }
    *t_us = adc_next_us;
    adc_next_us += 1000000u / adc_rate;
    adc_pos_us += 1000000u / adc_rate;
    return 1;
}

/* ------------------------------------------------------------------------------- bench fixture */

static const char *const ELECTRODE[9] = {"RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6"};

static void fixture_puts(const char *s)
{
    while (*s)
        uart_putc(UART1, (uint8_t)*s++);
}

static void fixture_line(const char *line)
{
    static const char hex[] = "0123456789abcdef";
    int on = strncmp(line, "on ", 3) == 0, off = strncmp(line, "off ", 4) == 0;
    const char *name = line + (on ? 3 : 4);
    int bit = -1;
    if (on || off) {
        if (on && strcmp(name, "all") == 0)
            bit = 9;
        for (int i = 0; i < 9; i++)
            if (strcmp(name, ELECTRODE[i]) == 0)
                bit = i;
    }
    if (bit < 0) {
        fixture_puts("error: expected 'off E', 'on E' or 'on all' (E = RA LA LL V1..V6)\n");
        return;
    }
    if (bit == 9)
        electrodes_off = 0;
    else if (on)
        electrodes_off &= (uint16_t)~(1u << bit);
    else
        electrodes_off |= (uint16_t)(1u << bit);
    char reply[] = "ok 000\n";
    reply[3] = hex[(electrodes_off >> 8) & 0xF];
    reply[4] = hex[(electrodes_off >> 4) & 0xF];
    reply[5] = hex[electrodes_off & 0xF];
    fixture_puts(reply);
}

void board_poll(void)
{
    static char line[16];
    static unsigned len;
    int c;
    while ((c = ring_get(&rx_fixture)) >= 0) {
        if (c == '\n' || c == '\r') {
            line[len] = 0;
            if (len)
                fixture_line(line);
            len = 0;
        } else if (len < sizeof line - 1) {
            line[len++] = (char)c;
        }
    }
}

void board_init(void)
{
    uart_init(UART0, 460800u);
    uart_init(UART1, 115200u);
    SYST_RVR = TICKS_PER_MS - 1u;
    SYST_CVR = 0;
    SYST_CSR = 0x7u;                          /* core clock, interrupt, enable */
    NVIC_ISER0 = (1u << IRQ_UART0_RX) | (1u << IRQ_UART1_RX);
}

void board_idle(void)
{
    __asm volatile("wfi");                    /* until the next interrupt: 1 ms tick or a received byte */
}
