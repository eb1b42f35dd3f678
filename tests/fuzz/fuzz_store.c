/* tests/fuzz/fuzz_store.c: the rendezvous store's messages. The input's first byte picks the
 * side:
 *  - even: the bytes a client sends to the server (dist/store_server.c), fed through the
 *    server's own frame decoder (wf__store_server_feed), several frames per input; the seeds
 *    start with a valid HELLO so the fuzzer reaches SET/GET/ADD/CHECK;
 *  - odd: a reply to a CHECK of up to 8 keys as the client reads it (dist/store.c,
 *    wf__store_parse_check_reply): byte 1 the status, byte 2 the key count, then the body. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "dist/store_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!(data[0] & 1)) {
        wf__store_server *sv = wf__store_server_new_detached();
        if (!sv) abort();
        size_t frames = 0;
        (void)wf__store_server_feed(sv, data + 1, size - 1, &frames);
        wf__store_server_stop(sv);
        return 0;
    }
    if (size < 3) return 0;
    uint32_t nkeys = data[2] % 9;
    bool missing[8] = { false };
    int m = wf__store_parse_check_reply(data[1], data + 3, size - 3, nkeys, missing);
    if (m > (int)nkeys) abort();
    if (m >= 0) {   /* only keys the reply named, all within the request */
        int set = 0;
        for (uint32_t i = 0; i < 8; i++) {
            if (missing[i] && i >= nkeys) abort();
            set += missing[i];
        }
        if (set > m) abort();
    }
    return 0;
}
