/* The machine's arithmetic limit: multiply-add loops on every core.
 *
 * Each thread runs a loop of independent AVX-512 multiply-adds that never
 * touch memory: float32 FMA (vfmadd231ps, 32 FLOP each), bfloat16 dot
 * products (vdpbf16ps, 64 FLOP) and int8 dot products (vpdpbusd, 128 ops).
 * Twelve accumulators hide the instruction latency. Prints one JSON object:
 * the best of `tries` runs, in G(FL)OP/s over all threads.
 *
 * Compiled for AMX as well (-mamx-*), it also times the tile multiplies that
 * AMX CPUs (Sapphire Rapids and later) run bfloat16 and int8 convolutions
 * with, far above the AVX-512 loops: four 16x16 accumulator tiles, two
 * source tiles in registers; tdpbf16ps is 16x16x32 multiply-adds (16,384
 * FLOP), tdpbusd 16x16x64 (32,768 ops).
 *
 *   cc -O3 -mavx512f -mavx512bf16 -mavx512vnni -pthread fma_peak.c -o fma_peak
 *   cc ... -mamx-tile -mamx-bf16 -mamx-int8 ...   # adds amx_bfloat16, amx_int8
 *   ./fma_peak [threads] [tries]
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __AMX_TILE__
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux: ask for the AMX tile state */
#define XFEATURE_XTILEDATA 18
#endif

#define ACC 12
#define ITERS 20000000L

enum kind { F32, BF16, INT8, AMX_BF16, AMX_INT8 };
static const double OPS[] = {2.0 * 16, 2.0 * 32, 2.0 * 64, 2.0 * 16 * 16 * 32, 2.0 * 16 * 16 * 64}; /* per instruction */
#define AMX_ITERS (ITERS / 10) /* a tile instruction does 256 times a vector one's work */
static const char *NAMES[] = {"float32", "bfloat16", "int8", "amx_bfloat16", "amx_int8"};
#ifdef __AMX_TILE__
#define LAST AMX_INT8
#else
#define LAST INT8
#endif

struct job { enum kind kind; float sink; };

/* One loop per kind, so each keeps its twelve accumulators in registers. */
#define LOOP(type, zero, step, reduce)                                    \
    do {                                                                  \
        type acc[ACC];                                                    \
        for (int i = 0; i < ACC; i++) acc[i] = zero;                      \
        for (long n = 0; n < ITERS; n++) {                                \
            _Pragma("GCC unroll 12")                                      \
            for (int i = 0; i < ACC; i++) acc[i] = step;                  \
        }                                                                 \
        float sum = 0;                                                    \
        for (int i = 0; i < ACC; i++) sum += (float)reduce(acc[i]);       \
        job->sink = sum; /* the result is used, so the loop stays */      \
    } while (0)

#ifdef __AMX_TILE__
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static void amx_work(struct job *job) {
    struct tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 6; t++) { config.rows[t] = 16; config.colsb[t] = 64; }
    _tile_loadconfig(&config);
    static uint8_t source[16 * 64];
    memset(source, 1, sizeof source);
    _tile_loadd(4, source, 64);
    _tile_loadd(5, source, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (long n = 0; n < AMX_ITERS; n++) {
        if (job->kind == AMX_BF16) {
            _tile_dpbf16ps(0, 4, 5); _tile_dpbf16ps(1, 4, 5);
            _tile_dpbf16ps(2, 4, 5); _tile_dpbf16ps(3, 4, 5);
        } else {
            _tile_dpbusd(0, 4, 5); _tile_dpbusd(1, 4, 5);
            _tile_dpbusd(2, 4, 5); _tile_dpbusd(3, 4, 5);
        }
    }
    float out[16 * 16];
    _tile_stored(0, out, 64);
    job->sink = out[0]; /* the result is used, so the loop stays */
    _tile_release();
}
#endif

static void *work(void *arg) {
    struct job *job = arg;
#ifdef __AMX_TILE__
    if (job->kind >= AMX_BF16) {
        amx_work(job);
        return NULL;
    }
#endif
    __m512 a = _mm512_set1_ps(1.0000001f), b = _mm512_set1_ps(0.9999999f);
    __m512bh h = (__m512bh)_mm512_set1_epi16(0x3f80); /* bfloat16 1.0 */
    __m512i u = _mm512_set1_epi8(1);
    if (job->kind == F32)
        LOOP(__m512, _mm512_setzero_ps(), _mm512_fmadd_ps(a, b, acc[i]), _mm512_reduce_add_ps);
    else if (job->kind == BF16)
        LOOP(__m512, _mm512_setzero_ps(), _mm512_dpbf16_ps(acc[i], h, h), _mm512_reduce_add_ps);
    else
        LOOP(__m512i, _mm512_setzero_si512(), _mm512_dpbusd_epi32(acc[i], u, u), _mm512_reduce_add_epi32);
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int tries = argc > 2 ? atoi(argv[2]) : 3;
    if (threads < 1 || threads > 1024 || tries < 1) return 2;
#ifdef __AMX_TILE__
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        fprintf(stderr, "fma_peak: the kernel refused the AMX tile state\n");
        return 3;
    }
#endif
    pthread_t *ids = calloc(threads, sizeof *ids);
    struct job *jobs = calloc(threads, sizeof *jobs);
    printf("{\"threads\": %d", threads);
    for (int k = F32; k <= LAST; k++) {
        double best = 0;
        for (int t = 0; t < tries; t++) {
            double start = now();
            for (int i = 0; i < threads; i++) {
                jobs[i].kind = k;
                pthread_create(&ids[i], NULL, work, &jobs[i]);
            }
            for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
            double instructions = k >= AMX_BF16 ? 4.0 * AMX_ITERS : (double)ACC * ITERS; /* per thread */
            double rate = OPS[k] * instructions * threads / (now() - start) / 1e9;
            if (rate > best) best = rate;
        }
        printf(", \"%s\": %.1f", NAMES[k], best);
    }
    printf(", \"sink\": %g}\n", (double)jobs[0].sink);
    free(ids);
    free(jobs);
    return 0;
}
