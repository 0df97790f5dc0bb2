// OpenBLAS's CBLAS interface; Debian installs cblas.h under the openblas include folder,
// which pkg-config adds to the search path.
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// Exported by OpenBLAS builds with DYNAMIC_ARCH (Debian's): the kernel table is chosen at load.
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);

/// OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than its release (e.g. family 6 model
/// 207, Emerald Rapids) and falls back to its SSE3 "Prescott" kernels, four times slower. When
/// that happened, the user did not choose a core (OPENBLAS_CORETYPE), and the CPU has AVX-512
/// (or AVX2 + FMA), choose SkylakeX (or Haswell) the way OPENBLAS_CORETYPE would, before any
/// BLAS call. Returns the core in use afterwards.
static inline const char *ckpt_openblas_prefer_known_core(void) {
    const char *core = openblas_get_corename();
    if (getenv("OPENBLAS_CORETYPE") != NULL || core == NULL || strcasecmp(core, "prescott") != 0) return core;
    __builtin_cpu_init();
    const char *better = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq")) {
        better = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        better = "Haswell";
    }
    if (better == NULL) return core;
    setenv("OPENBLAS_CORETYPE", better, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");  // children (tests, peers) detect for themselves
    return openblas_get_corename();
}

// OpenBLAS (pthreads builds) starts its worker threads when it is loaded, and each spins on
// sched_yield for about 2^28 cycles (a tenth of a second) before it sleeps: a tenth of a core taken
// from every short ckpt program. This stops them; the next multi-threaded product starts them again
// (exec_blas_async re-initializes the pool, as after a fork). Weak: a serial OpenBLAS lacks it.
int blas_thread_shutdown_(void) __attribute__((weak));
static inline void ckpt_openblas_stop_idle_threads(void) {
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

// LAPACK's Cholesky factorization and inverse (OpenBLAS exports them), column-major, for GPTQ's
// inverse Hessian.
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);
// and its solve (GPTQ's scale refit: one small symmetric positive definite system per row).
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb, int *info);
// LAPACK's divide-and-conquer SVD (the driver torch.linalg.svd uses on CPU), column-major, for
// PEFT's SVD combination of LoRA adapters.
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u, const int *ldu,
             float *vt, const int *ldvt, float *work, const int *lwork, int *iwork, int *info);
