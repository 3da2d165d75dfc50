/* The machine's arithmetic limit: multiply-add loops on every core.
 *
 * Each thread runs a loop of independent AVX-512 multiply-adds that never
 * touch memory: float32 FMA (vfmadd231ps, 32 FLOP each), bfloat16 dot
 * products (vdpbf16ps, 64 FLOP) and int8 dot products (vpdpbusd, 128 ops).
 * Twelve accumulators hide the instruction latency. Prints one JSON object:
 * the best of `tries` runs, in G(FL)OP/s over all threads.
 *
 *   cc -O3 -mavx512f -mavx512bf16 -mavx512vnni -pthread fma_peak.c -o fma_peak
 *   ./fma_peak [threads] [tries]
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACC 12
#define ITERS 20000000L

enum kind { F32, BF16, INT8 };
static const double OPS[] = {2.0 * 16, 2.0 * 32, 2.0 * 64}; /* per instruction */
static const char *NAMES[] = {"float32", "bfloat16", "int8"};

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

static void *work(void *arg) {
    struct job *job = arg;
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
    pthread_t *ids = calloc(threads, sizeof *ids);
    struct job *jobs = calloc(threads, sizeof *jobs);
    printf("{\"threads\": %d", threads);
    for (int k = F32; k <= INT8; k++) {
        double best = 0;
        for (int t = 0; t < tries; t++) {
            double start = now();
            for (int i = 0; i < threads; i++) {
                jobs[i].kind = k;
                pthread_create(&ids[i], NULL, work, &jobs[i]);
            }
            for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
            double rate = OPS[k] * ACC * ITERS * threads / (now() - start) / 1e9;
            if (rate > best) best = rate;
        }
        printf(", \"%s\": %.1f", NAMES[k], best);
    }
    printf(", \"sink\": %g}\n", (double)jobs[0].sink);
    free(ids);
    free(jobs);
    return 0;
}
