#ifndef KAPPA_CRC32C_H
#define KAPPA_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli) with the CPU's CRC32 instruction (x86-64 SSE4.2, AArch64 CRC). Swift
   cannot use the instruction without building everything for that CPU; here it is compiled for
   these two functions only and chosen at run time, so the same binary runs everywhere. */

/* 1 when this CPU has the instruction, else 0 (then use the portable table-driven code). */
int kappa_crc32c_hw_available(void);

/* The checksum of `length` bytes continuing from `crc` (0 to start), as the portable code
   computes it. Call only when kappa_crc32c_hw_available() is 1. */
uint32_t kappa_crc32c_hw(uint32_t crc, const void *data, size_t length);

#endif
