/* tensor/dtype.c: dtype names and sizes, half-precision conversions, device names. */
#include "tensor_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; size_t size; bool fp; } dt_info[WF_DTYPE_COUNT] = {
    [WF_DTYPE_DEFAULT] = { "default", 4, true },
    [WF_F32] = { "float32", 4, true },  [WF_F64] = { "float64", 8, true },
    [WF_F16] = { "float16", 2, true },  [WF_BF16] = { "bfloat16", 2, true },
    [WF_I64] = { "int64", 8, false },   [WF_I32] = { "int32", 4, false },
    [WF_U8] = { "uint8", 1, false },    [WF_BOOL] = { "bool", 1, false },
};

const char *wf_dtype_name(wf_dtype dt) {
    return (unsigned)dt < WF_DTYPE_COUNT ? dt_info[dt].name : "invalid";
}
size_t wf_dtype_size(wf_dtype dt) { return (unsigned)dt < WF_DTYPE_COUNT ? dt_info[dt].size : 0; }
bool wf_dtype_is_floating(wf_dtype dt) { return (unsigned)dt < WF_DTYPE_COUNT && dt_info[dt].fp && dt != WF_DTYPE_DEFAULT; }

int wf_dtype_parse(const char *s, wf_dtype *out) {
    static const struct { const char *n; wf_dtype d; } names[] = {
        { "float32", WF_F32 }, { "f32", WF_F32 }, { "float", WF_F32 },
        { "float64", WF_F64 }, { "f64", WF_F64 }, { "double", WF_F64 },
        { "float16", WF_F16 }, { "f16", WF_F16 }, { "half", WF_F16 },
        { "bfloat16", WF_BF16 }, { "bf16", WF_BF16 },
        { "int64", WF_I64 }, { "i64", WF_I64 }, { "long", WF_I64 },
        { "int32", WF_I32 }, { "i32", WF_I32 }, { "int", WF_I32 },
        { "uint8", WF_U8 }, { "u8", WF_U8 }, { "bool", WF_BOOL },
    };
    if (!s) return wf__error(WF_ENULL, "wf_dtype_parse: NULL name");
    if (!out) return wf__error(WF_ENULL, "wf_dtype_parse: NULL output pointer");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].n)) { *out = names[i].d; return 0; }
    return wf__error(WF_EINVAL, "wf_dtype_parse: unknown dtype '%s' (valid: float32, float64, "
                     "float16, bfloat16, int64, int32, uint8, bool)", s);
}

/* IEEE half <-> float, round to nearest even. */
float wf__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        if (man == 0) { v.u = sign; return v.f; }
        /* subnormal: value = man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (exp == 31) v.u = sign | 0x7f800000u | (man << 13);
    else v.u = sign | ((exp + 112) << 23) | (man << 13);
    return v.f;
}

uint16_t wf__f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    uint32_t x = v.u, sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);         /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);        /* overflow -> inf */
    if (ax < 0x38800000u) {                                          /* subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;                 /* < 2^-25: rounds to 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)e;                                    /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

double wf__load(const void *p, wf_dtype dt) {
    switch (dt) {
    case WF_F32: return *(const float *)p;
    case WF_F64: return *(const double *)p;
    case WF_F16: return wf__f16_to_f32(*(const uint16_t *)p);
    case WF_BF16: return wf__bf16_to_f32(*(const uint16_t *)p);
    case WF_I64: return (double)*(const int64_t *)p;
    case WF_I32: return *(const int32_t *)p;
    case WF_U8: return *(const uint8_t *)p;
    case WF_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
    default: return NAN;
    }
}

void wf__store(void *p, wf_dtype dt, double v) {
    switch (dt) {
    case WF_F32: *(float *)p = (float)v; break;
    case WF_F64: *(double *)p = v; break;
    case WF_F16: *(uint16_t *)p = wf__f32_to_f16((float)v); break;
    case WF_BF16: *(uint16_t *)p = wf__f32_to_bf16((float)v); break;
    case WF_I64: *(int64_t *)p = isfinite(v) ? (int64_t)v : 0; break;
    case WF_I32: *(int32_t *)p = isfinite(v) ? (int32_t)v : 0; break;
    case WF_U8: *(uint8_t *)p = isfinite(v) ? (uint8_t)(int64_t)v : 0; break;
    case WF_BOOL: *(uint8_t *)p = v != 0.0; break;
    default: break;
    }
}

/* ---------------------------------------------------------------- devices */

int wf_device_parse(const char *s, wf_device *out) {
    if (!s) return wf__error(WF_ENULL, "wf_device_parse: NULL device name");
    if (!out) return wf__error(WF_ENULL, "wf_device_parse: NULL output pointer");
    if (!strcmp(s, "cpu")) { *out = WF_CPU; return 0; }
    if (!strcmp(s, "meta")) { *out = WF_META; return 0; }
    if (!strncmp(s, "cuda", 4) && (s[4] == 0 || s[4] == ':')) {
        long idx = 0;
        if (s[4] == ':') {
            char *end;
            idx = strtol(s + 5, &end, 10);
            if (end == s + 5 || *end || idx < 0 || idx > 1023)
                return wf__error(WF_EINVAL, "wf_device_parse: bad device index in '%s'", s);
        }
        *out = WF_CUDA(idx);
        return 0;
    }
    return wf__error(WF_EINVAL, "wf_device_parse: unknown device '%s' (valid: cpu, cuda, cuda:N, meta)", s);
}

char *wf_device_str(wf_device d, char *buf, size_t n) {
    if (!buf) { wf__error(WF_ENULL, "wf_device_str: NULL buffer"); return NULL; }
    if (d.type == WF_DEV_CPU) snprintf(buf, n, "cpu");
    else if (d.type == WF_DEV_CUDA) snprintf(buf, n, "cuda:%d", d.index);
    else if (d.type == WF_DEV_META) snprintf(buf, n, "meta");
    else snprintf(buf, n, "invalid");
    return buf;
}

bool wf_device_eq(wf_device a, wf_device b) { return a.type == b.type && a.index == b.index; }

static _Thread_local wf_dtype g_default_dtype = WF_F32;
static _Thread_local wf_device g_default_device = { WF_DEV_CPU, 0 };

wf_dtype wf_get_default_dtype(void) { return g_default_dtype; }
int wf_set_default_dtype(wf_dtype dt) {
    if (!wf_dtype_is_floating(dt))
        return wf__error(WF_EDTYPE, "wf_set_default_dtype: %s is not a floating dtype", wf_dtype_name(dt));
    g_default_dtype = dt;
    return 0;
}
wf_device wf_get_default_device(void) { return g_default_device; }
static int wf_set_default_device__body(wf_device d) {
    if (!wf__kernels(d)) return wf_error();
    g_default_device = d;
    return 0;
}

int wf_set_default_device(wf_device d) {
    WF__NAMED("wf_set_default_device", int, r < 0, wf_set_default_device__body(d));
}

wf_dtype wf__dtype(wf_dtype dt) { return dt == WF_DTYPE_DEFAULT ? g_default_dtype : dt; }
