/* A real ECG excerpt built into the emulated front end (generated: see make_excerpt.py). */
#ifndef ECG_EXCERPT_H
#define ECG_EXCERPT_H

#include <stdint.h>

extern const char ecg_excerpt_name[];
extern const uint16_t ecg_excerpt_fs;                 /* Hz */
extern const uint32_t ecg_excerpt_len;                /* samples */
extern const int16_t ecg_excerpt_uv[][8];             /* microvolts, I, II, V1..V6 */

#endif
