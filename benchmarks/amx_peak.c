/* The machine's bfloat16 and int8 limit on CPUs with AMX: tile loops on every core.
 *
 * On AMX CPUs (Intel Sapphire Rapids and later) OpenVINO and oneDNN run
 * bfloat16 and int8 convolutions as tile matrix multiplies, far above what
 * the AVX-512 loops of fma_peak.c reach, so shares of peak for those
 * precisions are taken against this loop. Each thread keeps four 16x16
 * accumulator tiles and multiplies two source tiles that stay in registers:
 * tdpbf16ps is 16x16x32 multiply-adds (16,384 FLOP), tdpbusd 16x16x64
 * (32,768 ops). Prints one JSON object: the best of `tries` runs, in
 * G(FL)OP/s over all threads.
 *
 *   cc -O3 -mamx-tile -mamx-bf16 -mamx-int8 -pthread amx_peak.c -o amx_peak
 *   ./amx_peak [threads] [tries]
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ITERS 2000000L
#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux: ask for the AMX tile state */
#define XFEATURE_XTILEDATA 18

enum kind { BF16, INT8 };
static const double OPS[] = {2.0 * 16 * 16 * 32, 2.0 * 16 * 16 * 64}; /* per instruction */
static const char *NAMES[] = {"bfloat16", "int8"};

struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

struct job { enum kind kind; float sink; };

static void *work(void *arg) {
    struct job *job = arg;
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
    if (job->kind == BF16) {
        for (long n = 0; n < ITERS; n++) {
            _tile_dpbf16ps(0, 4, 5); _tile_dpbf16ps(1, 4, 5);
            _tile_dpbf16ps(2, 4, 5); _tile_dpbf16ps(3, 4, 5);
        }
    } else {
        for (long n = 0; n < ITERS; n++) {
            _tile_dpbusd(0, 4, 5); _tile_dpbusd(1, 4, 5);
            _tile_dpbusd(2, 4, 5); _tile_dpbusd(3, 4, 5);
        }
    }
    float out[16 * 16];
    _tile_stored(0, out, 64);
    job->sink = out[0]; /* the result is used, so the loop stays */
    _tile_release();
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
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        fprintf(stderr, "amx_peak: the kernel refused the AMX tile state\n");
        return 3;
    }
    pthread_t *ids = calloc(threads, sizeof *ids);
    struct job *jobs = calloc(threads, sizeof *jobs);
    printf("{\"threads\": %d", threads);
    for (int k = BF16; k <= INT8; k++) {
        double best = 0;
        for (int t = 0; t < tries; t++) {
            double start = now();
            for (int i = 0; i < threads; i++) {
                jobs[i].kind = k;
                pthread_create(&ids[i], NULL, work, &jobs[i]);
            }
            for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
            double rate = OPS[k] * 4 * ITERS * threads / (now() - start) / 1e9;
            if (rate > best) best = rate;
        }
        printf(", \"%s\": %.1f", NAMES[k], best);
    }
    printf("}\n");
    free(ids);
    free(jobs);
    return 0;
}
