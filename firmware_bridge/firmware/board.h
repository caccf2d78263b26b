/*
 * board.h: what the front-end application (frontend_app.c) needs from a board. Port the firmware to a
 * new MCU by implementing these functions (docs/hardware.md); nothing else in the application or in
 * ecg_wire.c touches hardware.
 *
 * Why this seam: the wire protocol, the command handling and the ADS1298 data path are the same on every
 * board; only the UART, the clock and the ADC's SPI/DRDY wiring differ. The QEMU board
 * (board_mps2_an385/) emulates the ADS1298 from a real ECG excerpt so the whole application runs
 * unchanged under emulation.
 */
#ifndef BOARD_H
#define BOARD_H

#include <stddef.h>
#include <stdint.h>

#define ADS1298_FRAME_BYTES 27u      /* 24-bit status + 8 x 24-bit big-endian channel data (RDATAC read) */

/* Clocks, UART to the host, ADC reset and configuration (PGA gain 6, Vref 2.4 V, lead-off comparators). */
void board_init(void);

/* Free-running device clock in microseconds since boot (the DATA frames' timestamp_us). */
uint64_t board_now_us(void);

/* Host link: blocking write of n bytes (or queue them to a DMA ring); non-blocking read of one byte
 * (returns -1 when none is waiting). The link must not drop received bytes while a frame is sent. */
void board_host_write(const uint8_t *p, size_t n);
int board_host_getc(void);

/* The ADC. set_rate: 250/500/1000 Hz (CONFIG1 DR bits); returns 0 for a rate the board cannot do.
 * start/stop: START pin or START/STOP opcodes + RDATAC. read: 1 when a new conversion is ready (DRDY),
 * with its 27 bytes and the device time of the conversion; 0 otherwise. */
int board_adc_set_rate(uint16_t rate_hz);
void board_adc_start(void);
void board_adc_stop(void);
int board_adc_read(uint8_t raw[ADS1298_FRAME_BYTES], uint64_t *t_us);

/* Anything the board must do regularly (a bench-fixture port, LEDs, a watchdog); called every loop. */
void board_poll(void);

/* Nothing to do until the next interrupt (WFI; or return at once on a board that must poll). */
void board_idle(void);

/* A unique id for DEVICE_INFO (e.g. the MCU's unique-ID registers), NUL-padded to 16 bytes. */
void board_device_id(char id[16]);

#endif
