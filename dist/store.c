/* dist/store.c: the TCP store's client and the public wf_store_* calls (weft/dist.h).
 *
 * Every wf_store is a client with one connection; the rank that serves also owns the server
 * thread (store_server.c) and talks to it through that same kind of connection, so there is
 * one code path. Requests on a connection are serialized by a mutex (the process group may
 * ask from a timeout path while another thread waits). Waiting calls (get, wait,
 * wait_ranks) poll the server with short, growing sleeps and never hold the mutex while
 * sleeping. Every socket operation is bounded by a deadline; a connection that timed out or
 * broke mid-request is closed (its byte stream can no longer be trusted) and later calls
 * fail at once naming the store. Wire format: store_proto.h. */
#include "dist/store_proto.h"
#include "dist/dist_impl.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct wf_store {
    pthread_mutex_t mu;          /* one request at a time on fd */
    int fd;                      /* -1 once the connection is lost */
    char host[256];
    int port;
    double timeout_s;
    int world_size;
    wf__store_server *server;    /* owned; NULL on ranks that only connect */
};

/* Our own clock and default timeout (process_group.c has the group's; the store stands
 * alone). */
static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

/* ---------------------------------------------------------------- bounded socket I/O */

/* Send or receive exactly n bytes on a non-blocking socket before deadline. 0, WF_ETIMEOUT,
 * or WF_EDIST (closed or failed; *err the errno, 0 for an orderly close). */
static int io_all(int fd, bool wr, void *buf, size_t n, int flags, double deadline, int *err) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = wr ? send(fd, p, n, flags | MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (r > 0) { p += r; n -= (size_t)r; continue; }
        if (r == 0 && !wr) { *err = 0; return WF_EDIST; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { *err = errno; return WF_EDIST; }
        double left = deadline - wf__dist_now();
        if (left <= 0) return WF_ETIMEOUT;
        struct pollfd pf = { .fd = fd, .events = wr ? POLLOUT : POLLIN };
        poll(&pf, 1, (int)ceil(fmin(left, 3600.0) * 1000));
    }
    return 0;
}

/* One request and its reply, under s->mu. The request is code followed by a and b (either
 * may be empty); the reply's status goes to *status and its body, malloc()ed (plain malloc:
 * a GET hands it to the caller) to *body (may be NULL to discard; then the body must be
 * small). Errors name fn and the store. */
static int roundtrip(wf_store *s, const char *fn, uint8_t code, const void *a, size_t na,
                     const void *b, size_t nb, uint8_t *status, uint8_t **body, size_t *nbody) {
    if (body) *body = NULL;
    if (s->fd < 0)
        return wf__error(WF_EDIST, "%s: the connection to the store at %s:%d was lost earlier", fn, s->host, s->port);
    double deadline = wf__dist_now() + s->timeout_s;
    uint8_t hdr[WF_STORE_HDR], *buf = NULL;
    wf__put_u32(hdr, (uint32_t)(1 + na + nb));
    hdr[4] = code;
    int err = 0, rc = io_all(s->fd, true, hdr, sizeof hdr, MSG_MORE, deadline, &err);
    if (!rc && na) rc = io_all(s->fd, true, (void *)a, na, nb ? MSG_MORE : 0, deadline, &err);
    if (!rc && nb) rc = io_all(s->fd, true, (void *)b, nb, 0, deadline, &err);
    if (!rc) rc = io_all(s->fd, false, hdr, sizeof hdr, 0, deadline, &err);
    uint32_t n = rc ? 1 : wf__get_u32(hdr);
    if (!rc && (n < 1 || n > WF_STORE_MAX_FRAME)) { rc = WF_EDIST; err = EPROTO; }
    if (!rc && !(buf = malloc(n))) rc = WF_ENOMEM;   /* n >= 1: never malloc(0) */
    if (!rc) rc = io_all(s->fd, false, buf, n - 1, 0, deadline, &err);
    if (rc) {
        free(buf);
        close(s->fd);
        s->fd = -1;
        if (rc == WF_ETIMEOUT)
            return wf__error(rc, "%s: no reply from the store at %s:%d within %.1f s", fn, s->host, s->port, s->timeout_s);
        if (rc == WF_ENOMEM)
            return wf__error(rc, "%s: out of memory for a reply of %u bytes from %s:%d", fn, n - 1, s->host, s->port);
        return wf__error(rc, "%s: the store at %s:%d %s", fn, s->host, s->port,
                         err == EPROTO ? "sent a malformed reply" : err ? strerror(err) : "closed the connection");
    }
    *status = hdr[4];
    if (nbody) *nbody = n - 1;
    if (body) *body = buf;
    else free(buf);
    return 0;
}

static int request(wf_store *s, const char *fn, uint8_t code, const void *a, size_t na,
                   const void *b, size_t nb, uint8_t *status, uint8_t **body, size_t *nbody) {
    pthread_mutex_lock(&s->mu);
    int rc = roundtrip(s, fn, code, a, na, b, nb, status, body, nbody);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---------------------------------------------------------------- connecting */

/* Retrying a local port that nobody serves can meet itself: when the kernel picks that very
 * port as the ephemeral source, the SYNs cross and the socket is connected to itself
 * (TCP simultaneous open). Such a socket would read its own requests back. */
static bool connected_to_itself(int fd) {
    struct sockaddr_storage a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    if (getsockname(fd, (struct sockaddr *)&a, &la) || getpeername(fd, (struct sockaddr *)&b, &lb)) return false;
    return la == lb && !memcmp(&a, &b, la);
}

/* One attempt at every address of host:port, each bounded by deadline. The socket, or -1
 * with *why set to the reason. */
static int connect_once(const char *host, int port, double deadline, char *why, size_t nwhy) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g) { snprintf(why, nwhy, "cannot resolve host: %s", gai_strerror(g)); return -1; }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { snprintf(why, nwhy, "%s", strerror(errno)); continue; }
        int e = connect(fd, a->ai_addr, a->ai_addrlen) ? errno : 0;
        if (e == EINPROGRESS) {   /* wait for it, but not past the deadline */
            struct pollfd pf = { .fd = fd, .events = POLLOUT };
            double left = deadline - wf__dist_now();
            socklen_t sl = sizeof e;
            if (left <= 0 || poll(&pf, 1, (int)ceil(left * 1000)) <= 0) e = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl)) e = errno;
        }
        if (!e && connected_to_itself(fd)) e = ECONNREFUSED;
        if (e) { snprintf(why, nwhy, "%s", strerror(e)); close(fd); fd = -1; }
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* Connect with retries (the server may not be up yet) and say hello. 0 or a code. */
static int connect_store(wf_store *s) {
    double start = wf__dist_now(), deadline = start + s->timeout_s, nap = 0.01;
    char why[160] = "no attempt made";
    for (;;) {
        s->fd = connect_once(s->host, s->port, deadline, why, sizeof why);
        if (s->fd >= 0) break;
        double left = deadline - wf__dist_now();
        if (left <= 0)
            return wf__error(WF_ETIMEOUT, "wf_store_new: could not connect to the store at %s:%d within %.1f s (%s)",
                             s->host, s->port, s->timeout_s, why);
        sleep_s(fmin(nap, left));
        nap = fmin(2 * nap, 0.25);
    }
    uint8_t hello[8], status, *body;
    size_t n;
    wf__put_u32(hello, WF_STORE_MAGIC);
    wf__put_u32(hello + 4, WF_STORE_VERSION);
    int rc = roundtrip(s, "wf_store_new", WF_STORE_HELLO, hello, 8, NULL, 0, &status, &body, &n);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", wf_error_message());
        return wf__error(WF_EDIST, "wf_store_new: %s:%d did not answer as a weft store (version %u): %s",
                         s->host, s->port, WF_STORE_VERSION, why);
    }
    bool ok = status == WF_STORE_OK && n == 8 && wf__get_u32(body) == WF_STORE_MAGIC &&
              wf__get_u32(body + 4) == WF_STORE_VERSION;
    free(body);
    if (!ok) return wf__error(WF_EDIST, "wf_store_new: %s:%d answered the handshake wrongly (not a weft store of version %u)",
                              s->host, s->port, WF_STORE_VERSION);
    return 0;
}

wf_store *wf_store_new(const char *host, int port, bool is_server, const wf_store_opts *o) {
    if (!host) host = "127.0.0.1";
    double timeout = o && o->timeout_s ? o->timeout_s : wf__dist_default_timeout();
    if (!(timeout > 0) || !isfinite(timeout)) {
        wf__error(WF_EINVAL, "wf_store_new: timeout_s must be > 0 (got %g)", timeout);
        return NULL;
    }
    if (port < 0 || port > 65535 || (!is_server && port == 0)) {
        wf__error(WF_EINVAL, "wf_store_new: port %d is not valid%s", port,
                  port == 0 ? " for a client (only the server may pick a free port)" : " (0..65535)");
        return NULL;
    }
    if (strlen(host) >= sizeof ((wf_store *)0)->host) {
        wf__error(WF_EINVAL, "wf_store_new: host name of %zu characters is too long", strlen(host));
        return NULL;
    }
    if (o && o->world_size < 0) {
        wf__error(WF_EINVAL, "wf_store_new: world_size must be >= 0 (got %d)", o->world_size);
        return NULL;
    }
    wf_store *s = wf__calloc(1, sizeof *s);
    if (!s) { wf__error(WF_ENOMEM, "wf_store_new: out of memory"); return NULL; }
    pthread_mutex_init(&s->mu, NULL);
    s->fd = -1;
    s->timeout_s = timeout;
    s->world_size = o ? o->world_size : 0;
    s->port = port;
    snprintf(s->host, sizeof s->host, "%s", host);
    if (is_server) {
        if (wf__store_server_start(host, port, &s->server)) { wf_store_free(s); return NULL; }
        s->port = wf__store_server_port(s->server);
        /* serving on every interface: reach ourselves through loopback */
        if (!*host || !strcmp(host, "0.0.0.0")) snprintf(s->host, sizeof s->host, "127.0.0.1");
    }
    if (connect_store(s)) { wf_store_free(s); return NULL; }
    return s;
}

int wf_store_port(const wf_store *s) {
    if (!s) return wf__error(WF_ENULL, "wf_store_port: store is NULL");
    return s->port;
}

void wf_store_free(wf_store *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    wf__store_server_stop(s->server);   /* closes every client's socket too */
    pthread_mutex_destroy(&s->mu);
    wf__free(s, sizeof *s);
}

/* ---------------------------------------------------------------- requests */

/* Check a key and encode it as a str into buf (4 + WF_STORE_MAX_KEY bytes). Its size or a code. */
static int encode_key(const char *fn, const wf_store *s, const char *key, uint8_t *buf) {
    if (!s || !key) return wf__error(WF_ENULL, "%s: %s is NULL", fn, s ? "key" : "store");
    size_t n = strlen(key);
    if (n == 0 || n > WF_STORE_MAX_KEY)
        return wf__error(WF_EINVAL, "%s: key '%.60s%s' has %zu bytes (must be 1..%u)", fn, key,
                         n > 60 ? "..." : "", n, WF_STORE_MAX_KEY);
    wf__put_u32(buf, (uint32_t)n);
    memcpy(buf + 4, key, n);
    return (int)(4 + n);
}

int wf_store_set(wf_store *s, const char *key, const void *value, size_t n) {
    uint8_t k[4 + WF_STORE_MAX_KEY], status;
    int kn = encode_key("wf_store_set", s, key, k);
    if (kn < 0) return kn;
    if (n > WF_STORE_MAX_VALUE)
        return wf__error(WF_EINVAL, "wf_store_set: value of key '%.200s' has %zu bytes (at most %u)", key, n, WF_STORE_MAX_VALUE);
    if (n && !value) return wf__error(WF_ENULL, "wf_store_set: value is NULL with %zu bytes", n);
    int rc = request(s, "wf_store_set", WF_STORE_SET, k, (size_t)kn, value, n, &status, NULL, NULL);
    if (!rc && status != WF_STORE_OK)
        return wf__error(WF_EDIST, "wf_store_set: the store refused key '%.200s' (status %d)", key, status);
    return rc;
}

/* Growing naps between polls: quick answers when the key is about to come, little traffic
 * when it is far off. */
static double next_nap(double *nap, double deadline) {
    double t = fmin(*nap, deadline - wf__dist_now());
    *nap = fmin(2 * *nap, 0.05);
    return t;
}

int wf_store_get(wf_store *s, const char *key, void **value, size_t *n) {
    uint8_t k[4 + WF_STORE_MAX_KEY], status, *body;
    if (value) *value = NULL;
    if (n) *n = 0;
    int kn = encode_key("wf_store_get", s, key, k);
    if (kn < 0) return kn;
    if (!value || !n) return wf__error(WF_ENULL, "wf_store_get: value or n is NULL");
    double deadline = wf__dist_now() + s->timeout_s, nap = 0.001;
    for (;;) {
        size_t len;
        int rc = request(s, "wf_store_get", WF_STORE_GET, k, (size_t)kn, NULL, 0, &status, &body, &len);
        if (rc) return rc;
        if (status == WF_STORE_OK) { *value = body; *n = len; return 0; }
        free(body);
        if (wf__dist_now() >= deadline)
            return wf__error(WF_ETIMEOUT, "wf_store_get: key '%.200s' did not appear within %.1f s (store at %s:%d)",
                             key, s->timeout_s, s->host, s->port);
        sleep_s(next_nap(&nap, deadline));
    }
}

int wf_store_add(wf_store *s, const char *key, int64_t delta, int64_t *out) {
    uint8_t k[4 + WF_STORE_MAX_KEY + 8], status, *body;
    size_t len;
    int kn = encode_key("wf_store_add", s, key, k);
    if (kn < 0) return kn;
    wf__put_u64(k + kn, (uint64_t)delta);
    int rc = request(s, "wf_store_add", WF_STORE_ADD, k, (size_t)kn + 8, NULL, 0, &status, &body, &len);
    if (rc) return rc;
    int64_t v = status == WF_STORE_OK && len == 8 ? (int64_t)wf__get_u64(body) : 0;
    free(body);
    if (status == WF_STORE_BAD_VALUE)
        return wf__error(WF_EINVAL, "wf_store_add: key '%.200s' holds a value that is not a decimal integer, "
                         "or adding %lld overflows it", key, (long long)delta);
    if (status != WF_STORE_OK || len != 8)
        return wf__error(WF_EDIST, "wf_store_add: malformed reply from the store at %s:%d", s->host, s->port);
    if (out) *out = v;
    return 0;
}

int wf__store_parse_check_reply(uint8_t status, const uint8_t *body, size_t len, uint32_t nkeys, bool *missing) {
    uint32_t m = len >= 4 ? wf__get_u32(body) : UINT32_MAX;
    if (status != WF_STORE_OK || m > nkeys || len != 4 + 4 * (size_t)m) return -1;
    for (uint32_t j = 0; j < m; j++) {
        uint32_t idx = wf__get_u32(body + 4 + 4 * j);
        if (idx >= nkeys) return -1;
        missing[idx] = true;
    }
    return (int)m;
}

/* Which of keys[0..n) are missing? Sets missing[i]; returns how many, or a code. Asks in
 * batches of WF_STORE_MAX_KEYS. */
static int find_missing(wf_store *s, const char *fn, const char *const *keys, int n, bool *missing) {
    int total = 0;
    for (int lo = 0; lo < n; lo += (int)WF_STORE_MAX_KEYS) {
        int hi = n - lo > (int)WF_STORE_MAX_KEYS ? lo + (int)WF_STORE_MAX_KEYS : n;
        size_t size = 4;
        for (int i = lo; i < hi; i++) size += 4 + strlen(keys[i]);
        uint8_t *req = wf__malloc(size), status, *body;
        if (!req) return wf__error(WF_ENOMEM, "%s: out of memory for %d keys", fn, n);
        uint8_t *p = req + 4;
        wf__put_u32(req, (uint32_t)(hi - lo));
        for (int i = lo; i < hi; i++) {
            size_t kn = strlen(keys[i]);
            wf__put_u32(p, (uint32_t)kn);
            memcpy(p + 4, keys[i], kn);
            p += 4 + kn;
            missing[i] = false;
        }
        size_t len;
        int rc = request(s, fn, WF_STORE_CHECK, req, size, NULL, 0, &status, &body, &len);
        wf__free(req, size);
        if (rc) return rc;
        int m = wf__store_parse_check_reply(status, body, len, (uint32_t)(hi - lo), missing + lo);
        free(body);
        if (m < 0) return wf__error(WF_EDIST, "%s: malformed reply from the store at %s:%d", fn, s->host, s->port);
        total += m;
    }
    return total;
}

int wf_store_check(wf_store *s, const char *key) {
    uint8_t k[4 + WF_STORE_MAX_KEY];
    int kn = encode_key("wf_store_check", s, key, k);
    if (kn < 0) return kn;
    bool missing;
    int rc = find_missing(s, "wf_store_check", &key, 1, &missing);
    return rc < 0 ? rc : !missing;
}

/* Poll until none of keys is missing or the deadline passes. 0, a code, or 1 on timeout with
 * missing[] telling which. */
static int poll_keys(wf_store *s, const char *fn, const char *const *keys, int n, bool *missing, double timeout) {
    double deadline = wf__dist_now() + timeout, nap = 0.001;
    for (;;) {
        int m = find_missing(s, fn, keys, n, missing);
        if (m <= 0) return m;
        if (wf__dist_now() >= deadline) return 1;
        sleep_s(next_nap(&nap, deadline));
    }
}

/* Append to buf (of size cap, holding *len chars) when it fits; false (buf unchanged) when
 * it does not. */
static bool append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap - *len) { buf[*len] = 0; return false; }
    *len += (size_t)w;
    return true;
}

int wf_store_wait(wf_store *s, const char *const *keys, int n, double timeout_s) {
    if (!s || (!keys && n > 0)) return wf__error(WF_ENULL, "wf_store_wait: %s is NULL", s ? "keys" : "store");
    if (n < 0) return wf__error(WF_EINVAL, "wf_store_wait: n must be >= 0 (got %d)", n);
    uint8_t k[4 + WF_STORE_MAX_KEY];
    for (int i = 0; i < n; i++) {
        int kn = encode_key("wf_store_wait", s, keys[i], k);
        if (kn < 0) return kn;
    }
    if (n == 0) return 0;
    double timeout = timeout_s > 0 ? timeout_s : s->timeout_s;
    bool *missing = wf__malloc((size_t)n);
    if (!missing) return wf__error(WF_ENOMEM, "wf_store_wait: out of memory for %d keys", n);
    int rc = poll_keys(s, "wf_store_wait", keys, n, missing, timeout);
    if (rc == 1) {
        char list[700] = "";
        size_t len = 0;
        int m = 0, shown = 0;
        for (int i = 0; i < n; i++) m += missing[i];
        for (int i = 0; i < n && shown < m; i++)   /* room is kept for " and N more" */
            if (missing[i]) {
                if (!append(list, sizeof list - 40, &len, shown ? ", '%.100s'" : "'%.100s'", keys[i])) break;
                shown++;
            }
        if (shown < m) append(list, sizeof list, &len, " and %d more", m - shown);
        rc = wf__error(WF_ETIMEOUT, "wf_store_wait: %d of %d keys did not appear within %.1f s: %s",
                       m, n, timeout, list);
    }
    wf__free(missing, (size_t)n);
    return rc;
}

int wf_store_wait_ranks(wf_store *s, const char *prefix, int rank, int world_size, double timeout_s) {
    if (!s || !prefix) return wf__error(WF_ENULL, "wf_store_wait_ranks: %s is NULL", s ? "prefix" : "store");
    if (world_size == 0) world_size = s->world_size;
    if (world_size <= 0 || rank < 0 || rank >= world_size)
        return wf__error(WF_EINVAL, "wf_store_wait_ranks: rank %d of world size %d (the rank must be in "
                         "0..world_size-1; world size 0 needs wf_store_opts.world_size)", rank, world_size);
    size_t pn = strlen(prefix);
    if (pn + 12 > WF_STORE_MAX_KEY)
        return wf__error(WF_EINVAL, "wf_store_wait_ranks: prefix of %zu bytes is too long", pn);
    /* every rank's key "<prefix>/<rank>", in one block: the pointers, then the strings */
    size_t size = (size_t)world_size * (sizeof(char *) + pn + 13) + (size_t)world_size;
    char **keys = wf__malloc(size);
    if (!keys) return wf__error(WF_ENOMEM, "wf_store_wait_ranks: out of memory for %d ranks", world_size);
    bool *missing = (bool *)(keys + world_size);
    char *text = (char *)(missing + world_size);
    for (int r = 0; r < world_size; r++) {
        keys[r] = text;
        text += snprintf(text, pn + 13, "%s/%d", prefix, r) + 1;
    }
    double timeout = timeout_s > 0 ? timeout_s : s->timeout_s;
    int rc = wf_store_set(s, keys[rank], "1", 1);
    if (!rc) rc = poll_keys(s, "wf_store_wait_ranks", (const char *const *)keys, world_size, missing, timeout);
    if (rc == 1) {
        char list[700] = "";
        size_t len = 0;
        int m = 0, shown = 0;
        for (int r = 0; r < world_size; r++) m += missing[r];
        for (int r = 0; r < world_size && shown < m; r++)
            if (missing[r]) {
                if (!append(list, sizeof list - 40, &len, shown ? ", %d" : "%d", r)) break;
                shown++;
            }
        if (shown < m) append(list, sizeof list, &len, " and %d more", m - shown);
        rc = wf__error(WF_ETIMEOUT, "wf_store_wait_ranks: %s %s of %d did not arrive within %.1f s (prefix '%.200s')",
                       m == 1 ? "rank" : "ranks", list, world_size, timeout, prefix);
    }
    wf__free(keys, size);
    return rc;
}
