#include "kappa_crc32c.h"
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int kappa_crc32c_hw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

/* One stream, 8 bytes an instruction: a few GB/s, far above what the log's disk writes or
   page-cache reads need. */
__attribute__((target("sse4.2")))
static uint64_t crc_words(uint64_t c, const unsigned char *p, size_t words) {
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        c = _mm_crc32_u64(c, w);
    }
    return c;
}

__attribute__((target("sse4.2")))
uint32_t kappa_crc32c_hw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = (uint32_t)~crc;
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    size_t words = n / 8;
    c = crc_words(c, p, words);
    p += 8 * words;
    n -= 8 * words;
    while (n > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    return ~(uint32_t)c;
}

#elif defined(__aarch64__)
#include <sys/auxv.h>
#include <arm_acle.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

int kappa_crc32c_hw_available(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0; }

__attribute__((target("crc")))
uint32_t kappa_crc32c_hw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __crc32cd(c, w);
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c = __crc32cb(c, *p++);
        n--;
    }
    return ~c;
}

#else
int kappa_crc32c_hw_available(void) { return 0; }
uint32_t kappa_crc32c_hw(uint32_t crc, const void *data, size_t n) { (void)data; (void)n; return crc; }
#endif
