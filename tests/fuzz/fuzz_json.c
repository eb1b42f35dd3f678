/* tests/fuzz/fuzz_json.c: io/json.c's parser on arbitrary bytes. Besides "no crash, no
 * leak", a parsed document must survive a round trip: written back (wf__sb_json_value) it
 * parses again, and writing that gives the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tensor/tensor_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[160];
    wf_json *v = NULL;
    /* depth 8 is safetensors' limit, 0 the default (64): both refusal paths get exercised */
    int depth = size && (data[0] & 1) ? 8 : 0;
    int rc = wf__json_parse((const char *)data, size, depth, &v, err, sizeof err);
    if (rc) {
        if (v || (rc != WF_ECORRUPT && rc != WF_ENOMEM) || !err[0]) abort();   /* the documented contract */
        return 0;
    }
    wf_sb a;
    wf__sb_init(&a);
    wf__sb_json_value(&a, v);
    size_t na = 0;
    char *ta = wf__sb_take(&a, &na);
    if (ta) {
        wf_json *w = NULL;
        if (wf__json_parse(ta, na, 0, &w, err, sizeof err)) abort();   /* we wrote what we cannot read */
        wf_sb b;
        wf__sb_init(&b);
        wf__sb_json_value(&b, w);
        size_t nb = 0;
        char *tb = wf__sb_take(&b, &nb);
        if (tb && (na != nb || memcmp(ta, tb, na))) abort();          /* not a fixed point */
        if (tb) wf__free(tb, nb + 1);
        wf__json_free(w);
        wf__free(ta, na + 1);
    }
    /* the accessors on whatever came out */
    int64_t i;
    (void)wf__json_int(v, &i);
    (void)wf__json_str(wf__json_at(v, 0));
    (void)wf__json_get(v, "dtype");
    wf__json_free(v);
    return 0;
}
