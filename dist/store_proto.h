/* dist/store_proto.h: the wire format of the TCP store (rendezvous), shared by the client
 * (dist/store.c) and the server thread (dist/store_server.c). Not installed.
 *
 * One TCP connection per wf_store; the client sends a request, the server answers it; one
 * request at a time per connection. Every message, in both directions, is one frame:
 *
 *     u32 length   bytes that follow this word (code + body), >= 1
 *     u8  code     the command (requests) or the status (replies)
 *     body         length - 1 bytes, laid out per command below
 *
 * Integers are big-endian; a "str" is a u32 byte count followed by the bytes (no NUL).
 *
 *     request                                  reply (status OK unless noted)
 *     HELLO  u32 magic "wfst", u32 version     u32 magic, u32 version
 *     SET    str key, value = rest of body     (empty)
 *     GET    str key                           value = whole body | NOT_FOUND
 *     ADD    str key, i64 delta                i64 new value | BAD_VALUE (not an integer,
 *                                              or overflow)
 *     CHECK  u32 n, n x str key                u32 m, m x u32 index of a missing key
 *
 * HELLO must come first. Nothing waits on the server: GET answers NOT_FOUND at once and the
 * client polls until its own deadline, so one slow wait never holds the connection (another
 * thread may use the same wf_store meanwhile) and the server keeps no timers. WAIT is the
 * client polling CHECK.
 *
 * The server trusts nothing: the header is checked against the command's limits (below)
 * before any byte of the body is read, the body buffer grows only as bytes arrive, and every
 * field is bounds-checked. A bad magic or version, an unknown command, a frame over the
 * limits, a body that does not parse exactly, or a connection closed mid-frame makes the
 * server drop that connection silently and go on serving the others. */
#ifndef WEFT_DIST_STORE_PROTO_H
#define WEFT_DIST_STORE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WF_STORE_MAGIC 0x77667374u   /* "wfst" */
#define WF_STORE_VERSION 1u

#define WF_STORE_MAX_KEY 4096u               /* bytes in a key */
#define WF_STORE_MAX_VALUE (64u << 20)       /* bytes in a value */
#define WF_STORE_MAX_KEYS 1024u              /* keys in one CHECK */
#define WF_STORE_HDR 5u                      /* u32 length + u8 code */
/* the largest frame of either direction (a SET of the largest key and value) */
#define WF_STORE_MAX_FRAME (1u + 4u + WF_STORE_MAX_KEY + WF_STORE_MAX_VALUE)

enum { WF_STORE_HELLO = 1, WF_STORE_SET = 2, WF_STORE_GET = 3, WF_STORE_ADD = 4, WF_STORE_CHECK = 5 };
enum { WF_STORE_OK = 0, WF_STORE_NOT_FOUND = 1, WF_STORE_BAD_VALUE = 2 };

static inline void wf__put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t wf__get_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wf__put_u64(uint8_t *p, uint64_t v) {
    wf__put_u32(p, (uint32_t)(v >> 32));
    wf__put_u32(p + 4, (uint32_t)v);
}
static inline uint64_t wf__get_u64(const uint8_t *p) {
    return (uint64_t)wf__get_u32(p) << 32 | wf__get_u32(p + 4);
}

/* The server (dist/store_server.c): a thread serving on host:port (port 0: any free port;
 * "0.0.0.0": every interface). Start returns 0 and *out, or a code with the error recorded
 * (WF_EDIST naming host:port). Stop wakes the thread, joins it and closes every socket. */
typedef struct wf__store_server wf__store_server;
int wf__store_server_start(const char *host, int port, wf__store_server **out);
int wf__store_server_port(const wf__store_server *sv);
void wf__store_server_stop(wf__store_server *sv);

/* The server's frame decoding without sockets (the fuzzer, tests): a server that owns a key
 * table but no thread or socket (free it with wf__store_server_stop), and the bytes of data
 * fed to it as if one new connection had sent them, frame after frame, through the very code
 * that serves sockets (replies are dropped). Returns 0 when every whole frame was accepted
 * (a frame cut off at the end is left pending, as on a socket), or -1 where the server would
 * drop the connection; *frames (optional) gets the number of frames answered. */
wf__store_server *wf__store_server_new_detached(void);
int wf__store_server_feed(wf__store_server *sv, const uint8_t *data, size_t n, size_t *frames);

/* The client's reading of a CHECK reply (dist/store.c) for a request of nkeys keys: sets
 * missing[i] for each index it names (missing[] is not cleared first). The count, or -1
 * when the reply is malformed (a status other than OK, a count above nkeys, a length that
 * does not match the count, an index out of range). */
int wf__store_parse_check_reply(uint8_t status, const uint8_t *body, size_t len, uint32_t nkeys, bool *missing);

#endif
