/*
 * crc: hashing loops over a 16 KiB buffer.
 *
 * Every iteration hashes the whole buffer with table-driven CRC32, bytewise
 * FNV-1a 64, an xxHash64-style word hash and Adler-32, then rewrites part of
 * the buffer from the results so that the next iteration hashes different data.
 */
#define ITERS_SMALL 8
#define ITERS_BENCH 20000
#define EXPECTED_SMALL 0x7f03d47270c49bcaULL
#define EXPECTED_BENCH 0x1e263f33c662fdbdULL

#include "bench.h"

#define BUF_WORDS 2048
#define BUF_BYTES (BUF_WORDS * 8)

static uint64_t buf_words[BUF_WORDS];
static uint32_t crc_table[256];

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n, uint32_t crc)
{
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    while (n--) {
        h ^= *p++;
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define XXH_P1 0x9e3779b185ebca87ULL
#define XXH_P2 0xc2b2ae3d27d4eb4fULL
#define XXH_P3 0x165667b19e3779f9ULL
#define XXH_P4 0x85ebca77c2b2ae63ULL
#define XXH_P5 0x27d4eb2f165667c5ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * XXH_P2;
    acc = rotl64(acc, 31);
    return acc * XXH_P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * XXH_P1 + XXH_P4;
}

/* xxHash64's main loop and finalisation over whole 64-bit words (n a multiple of 4). */
static uint64_t xxh64_words(const uint64_t *w, size_t n, uint64_t seed)
{
    uint64_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;
    for (size_t i = 0; i < n; i += 4) {
        v1 = xxh_round(v1, w[i]);
        v2 = xxh_round(v2, w[i + 1]);
        v3 = xxh_round(v3, w[i + 2]);
        v4 = xxh_round(v4, w[i + 3]);
    }
    uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxh_merge(h, v1);
    h = xxh_merge(h, v2);
    h = xxh_merge(h, v3);
    h = xxh_merge(h, v4);
    h += (uint64_t)n * 8;
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

static uint32_t adler32(const uint8_t *p, size_t n)
{
    uint32_t a = 1, b = 0;
    while (n) {
        /* 5552 is the largest block for which b cannot overflow before the modulo. */
        size_t chunk = n < 5552 ? n : 5552;
        n -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= 65521u;
        b %= 65521u;
    }
    return (b << 16) | a;
}

int main(void)
{
    uint8_t *bytes = (uint8_t *)buf_words;
    uint64_t x = 0x243f6a8885a308d3ULL;
    for (int i = 0; i < BUF_WORDS; i++) {
        /* xorshift64* */
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf_words[i] = x * 0x2545f4914f6cdd1dULL;
    }
    crc32_init();

    uint64_t sum = 0;
    uint32_t crc = 0;
    for (uint32_t it = 0; it < ITERS; it++) {
        crc = crc32(bytes, BUF_BYTES, crc);
        uint64_t fnv = fnv1a64(bytes, BUF_BYTES);
        uint64_t xxh = xxh64_words(buf_words, BUF_WORDS, sum);
        uint32_t adl = adler32(bytes, BUF_BYTES);
        sum = mix64(sum, crc);
        sum = mix64(sum, fnv);
        sum = mix64(sum, xxh);
        sum = mix64(sum, adl);
        /* Feed the results back: rewrite 1/16 of the buffer at a result-dependent offset. */
        uint32_t start = (uint32_t)(xxh % BUF_WORDS) & ~15u;
        for (uint32_t i = 0; i < BUF_WORDS / 16; i++) {
            uint32_t j = (start + i * 16) % BUF_WORDS;
            buf_words[j] = rotl64(buf_words[j] ^ fnv, (int)(i & 31) + 1) + adl;
            bytes[(j * 8 + (crc & 7)) % BUF_BYTES] ^= (uint8_t)(crc >> 8);
        }
    }
    return bench_check("crc", ITERS, sum, EXPECTED_SUM);
}
