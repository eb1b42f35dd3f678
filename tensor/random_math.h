/* tensor/random_math.h: the transcendental functions of the Box-Muller transform, written
 * with + - * / only, so that the CPU (C) and CUDA (device) builds compute bit-identical
 * normals whatever their libm. Included by tensor/cpu/random.c and the CUDA random kernels.
 *
 * On the device every operation goes through __d*_rn, which keeps nvcc from contracting a
 * multiply and an add into an FMA (the host build, ISO C11 without -mfma, does not
 * contract). frexp/ldexp-free: the exponent is taken by exact scaling.
 * Accuracy: about 1e-16 relative, more than enough for random numbers; what matters is that
 * both devices agree. */
#ifndef WEFT_RANDOM_MATH_H
#define WEFT_RANDOM_MATH_H

#ifdef __CUDACC__
#define WF_RM_FN static __host__ __device__ __forceinline__
#if defined(__CUDA_ARCH__)
#define WF_RM_ADD(a, b) __dadd_rn((a), (b))
#define WF_RM_SUB(a, b) __dsub_rn((a), (b))
#define WF_RM_MUL(a, b) __dmul_rn((a), (b))
#define WF_RM_DIV(a, b) __ddiv_rn((a), (b))
#endif
#else
#define WF_RM_FN static inline
#endif
#ifndef WF_RM_ADD
#define WF_RM_ADD(a, b) ((a) + (b))
#define WF_RM_SUB(a, b) ((a) - (b))
#define WF_RM_MUL(a, b) ((a) * (b))
#define WF_RM_DIV(a, b) ((a) / (b))
#endif

/* natural log of x in (0, 1] (the only range Box-Muller needs) */
WF_RM_FN double wf__rm_log(double x) {
    /* x = m * 2^e with m in [0.7071, 1.4142): scale by exact powers of two */
    int e = 0;
    while (x < 0.70710678118654752440) { x = WF_RM_MUL(x, 2.0); e--; }
    /* log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716 */
    double s = WF_RM_DIV(WF_RM_SUB(x, 1.0), WF_RM_ADD(x, 1.0));
    double s2 = WF_RM_MUL(s, s);
    double p = 1.0 / 25.0;
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 23.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 21.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 19.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 17.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 15.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 13.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 11.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 9.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 7.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 5.0);
    p = WF_RM_ADD(WF_RM_MUL(p, s2), 1.0 / 3.0);
    double lm = WF_RM_MUL(WF_RM_MUL(2.0, s), WF_RM_ADD(WF_RM_MUL(p, s2), 1.0));
    /* e * ln2 with ln2 split so that e * LN2_HI is exact */
    const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    return WF_RM_ADD(WF_RM_ADD(WF_RM_MUL((double)e, LN2_HI), lm), WF_RM_MUL((double)e, LN2_LO));
}

/* sin and cos of a in [0, 2 pi) */
WF_RM_FN void wf__rm_sincos(double a, double *sn, double *cs) {
    /* quadrant k = nearest multiple of pi/2; r = a - k pi/2 in [-pi/4, pi/4] (Cody-Waite) */
    const double PIO2_HI = 1.57079632673412561417e+00, PIO2_LO = 6.07710050650619224932e-11;
    int k = (int)WF_RM_ADD(WF_RM_MUL(a, 0.63661977236758134308), 0.5);
    double r = WF_RM_SUB(WF_RM_SUB(a, WF_RM_MUL((double)k, PIO2_HI)), WF_RM_MUL((double)k, PIO2_LO));
    double r2 = WF_RM_MUL(r, r);
    /* Taylor series to r^17 / r^18: error below 1e-16 for |r| <= pi/4 */
    double ps = -1.0 / 355687428096000.0;                 /* -1/17! */
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), 1.0 / 1307674368000.0);    /* 1/15! */
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), -1.0 / 6227020800.0);
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), 1.0 / 39916800.0);
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), -1.0 / 362880.0);
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), 1.0 / 5040.0);
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), -1.0 / 120.0);
    ps = WF_RM_ADD(WF_RM_MUL(ps, r2), 1.0 / 6.0);
    double sr = WF_RM_SUB(r, WF_RM_MUL(WF_RM_MUL(r, r2), ps));
    double pc = 1.0 / 6402373705728000.0;                  /* 1/18! */
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), -1.0 / 20922789888000.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), 1.0 / 87178291200.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), -1.0 / 479001600.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), 1.0 / 3628800.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), -1.0 / 40320.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), 1.0 / 720.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), -1.0 / 24.0);
    pc = WF_RM_ADD(WF_RM_MUL(pc, r2), 0.5);
    double cr = WF_RM_SUB(1.0, WF_RM_MUL(r2, pc));
    switch (k & 3) {
    case 0: *sn = sr; *cs = cr; break;
    case 1: *sn = cr; *cs = -sr; break;
    case 2: *sn = -sr; *cs = -cr; break;
    default: *sn = -cr; *cs = sr; break;
    }
}

#endif
