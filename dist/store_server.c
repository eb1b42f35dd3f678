/* dist/store_server.c: the TCP store's server, one thread polling every connection.
 *
 * The thread owns everything here (the key table, the connections); the owner only starts
 * and stops it, through a wake pipe. Sockets are non-blocking: a connection is read into its
 * own buffer until a whole frame has arrived, answered into its own output buffer, and not
 * read again until that answer has gone out, so a client that never reads only stalls
 * itself. The frame layout and the rules for refusing a frame are in store_proto.h. */
#include "dist/store_proto.h"
#include "tensor/tensor_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TABLE_SIZE 1024          /* hash buckets; rendezvous keeps a few keys per rank */
#define KEEP_BUFFER (1u << 20)   /* buffers larger than this are freed after each frame */

typedef struct entry {
    struct entry *next;
    uint8_t *val;                /* vlen bytes (+1 so a 0-byte value still has a block) */
    size_t klen, vlen;
    char key[];                  /* klen bytes */
} entry;

typedef struct conn {
    int fd;
    int greeted;                 /* HELLO received */
    uint8_t hdr[WF_STORE_HDR];
    size_t hdr_got;
    uint8_t code;
    uint8_t *in;                 /* the body being received */
    size_t in_len, in_got, in_cap;
    uint8_t *out;                /* the reply being sent */
    size_t out_len, out_sent, out_cap;
} conn;

struct wf__store_server {
    int lfd, port;
    int wake[2];                 /* the owner writes a byte to stop the thread */
    pthread_t thread;
    entry *table[TABLE_SIZE];
    conn *conns;
    int nconns, capconns;
    struct pollfd *pfds;         /* capconns + 2 */
};

/* ---------------------------------------------------------------- the key table */

static size_t hash(const uint8_t *k, size_t n) {   /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ull;
    return (size_t)(h % TABLE_SIZE);
}

static entry *lookup(wf__store_server *sv, const uint8_t *k, size_t n) {
    for (entry *e = sv->table[hash(k, n)]; e; e = e->next)
        if (e->klen == n && !memcmp(e->key, k, n)) return e;
    return NULL;
}

/* Store a copy of v under k (overwrites). 0, or -1 when out of memory. */
static int put(wf__store_server *sv, const uint8_t *k, size_t kn, const void *v, size_t vn) {
    uint8_t *copy = wf__malloc(vn + 1);
    if (!copy) return -1;
    if (vn) memcpy(copy, v, vn);
    entry *e = lookup(sv, k, kn);
    if (!e) {
        e = wf__malloc(sizeof *e + kn);
        if (!e) { wf__free(copy, vn + 1); return -1; }
        memcpy(e->key, k, kn);
        e->klen = kn;
        e->val = NULL;
        size_t b = hash(k, kn);
        e->next = sv->table[b];
        sv->table[b] = e;
    } else {
        wf__free(e->val, e->vlen + 1);
    }
    e->val = copy;
    e->vlen = vn;
    return 0;
}

static void free_table(wf__store_server *sv) {
    for (int b = 0; b < TABLE_SIZE; b++)
        for (entry *e = sv->table[b], *next; e; e = next) {
            next = e->next;
            wf__free(e->val, e->vlen + 1);
            wf__free(e, sizeof *e + e->klen);
        }
}

/* ---------------------------------------------------------------- replies */

/* Append a frame header for a reply of status and body bytes; returns where the body goes,
 * or NULL when out of memory. */
static uint8_t *reply(conn *c, uint8_t status, size_t body) {
    size_t need = c->out_len + WF_STORE_HDR + body;
    if (need > c->out_cap) {
        uint8_t *p = wf__realloc(c->out, c->out_cap, need);
        if (!p) return NULL;
        c->out = p;
        c->out_cap = need;
    }
    uint8_t *h = c->out + c->out_len;
    wf__put_u32(h, (uint32_t)(1 + body));
    h[4] = status;
    c->out_len = need;
    return h + WF_STORE_HDR;
}

/* Send what the reply buffer holds without blocking. 0, or -1 to drop the connection. */
static int flush(conn *c) {
    if (c->fd < 0) c->out_sent = c->out_len;   /* wf__store_server_feed: no socket, the reply is dropped */
    while (c->out_sent < c->out_len) {
        ssize_t r = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) { c->out_sent += (size_t)r; continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;   /* POLLOUT later */
        return -1;
    }
    c->out_len = c->out_sent = 0;
    if (c->out_cap > KEEP_BUFFER) { wf__free(c->out, c->out_cap); c->out = NULL; c->out_cap = 0; }
    return 0;
}

/* ---------------------------------------------------------------- requests */

/* A cursor over a received body; every read is bounds-checked. */
typedef struct { const uint8_t *p; size_t left; } cursor;

static int take(cursor *c, size_t n, const uint8_t **out) {
    if (c->left < n) return -1;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return 0;
}
static int take_u32(cursor *c, uint32_t *v) {
    const uint8_t *p;
    if (take(c, 4, &p)) return -1;
    *v = wf__get_u32(p);
    return 0;
}
static int take_key(cursor *c, const uint8_t **k, size_t *n) {
    uint32_t len;
    if (take_u32(c, &len) || len == 0 || len > WF_STORE_MAX_KEY) return -1;
    *n = len;
    return take(c, len, k);
}

/* Is a frame of this code and length (code + body) acceptable, before reading its body? */
static int frame_ok(const conn *c, uint8_t code, uint32_t n) {
    if (!c->greeted) return code == WF_STORE_HELLO && n == 9;
    switch (code) {
    case WF_STORE_SET: return n >= 1 + 4 + 1 && n <= WF_STORE_MAX_FRAME;
    case WF_STORE_GET: return n >= 1 + 4 + 1 && n <= 1 + 4 + WF_STORE_MAX_KEY;
    case WF_STORE_ADD: return n >= 1 + 4 + 1 + 8 && n <= 1 + 4 + WF_STORE_MAX_KEY + 8;
    case WF_STORE_CHECK: return n >= 1 + 4 && n <= 1 + 4 + WF_STORE_MAX_KEYS * (4 + WF_STORE_MAX_KEY);
    default: return 0;
    }
}

/* "-12" -> -12; anything but an optional sign and 1..19 digits is refused. */
static int parse_int(const uint8_t *s, size_t n, int64_t *out) {
    char buf[24];
    if (n == 0 || n > 20) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    size_t i = (buf[0] == '-' || buf[0] == '+');
    if (i == n) return -1;
    for (size_t j = i; j < n; j++)
        if (buf[j] < '0' || buf[j] > '9') return -1;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno) return -1;
    *out = v;
    return 0;
}

/* Answer one whole frame. 0, or -1 to drop the connection (malformed, or out of memory). */
static int handle(wf__store_server *sv, conn *c) {
    cursor cur = { c->in, c->in_len };
    const uint8_t *k = NULL, *p;
    size_t kn = 0;
    uint8_t *b;
    switch (c->code) {
    case WF_STORE_HELLO: {
        uint32_t magic, version;
        if (take_u32(&cur, &magic) || take_u32(&cur, &version)) return -1;
        if (magic != WF_STORE_MAGIC || version != WF_STORE_VERSION) return -1;
        c->greeted = 1;
        if (!(b = reply(c, WF_STORE_OK, 8))) return -1;
        wf__put_u32(b, WF_STORE_MAGIC);
        wf__put_u32(b + 4, WF_STORE_VERSION);
        return 0;
    }
    case WF_STORE_SET:
        if (take_key(&cur, &k, &kn) || cur.left > WF_STORE_MAX_VALUE) return -1;
        if (put(sv, k, kn, cur.p, cur.left)) return -1;
        return reply(c, WF_STORE_OK, 0) ? 0 : -1;
    case WF_STORE_GET: {
        if (take_key(&cur, &k, &kn) || cur.left) return -1;
        entry *e = lookup(sv, k, kn);
        if (!e) return reply(c, WF_STORE_NOT_FOUND, 0) ? 0 : -1;
        if (!(b = reply(c, WF_STORE_OK, e->vlen))) return -1;
        if (e->vlen) memcpy(b, e->val, e->vlen);
        return 0;
    }
    case WF_STORE_ADD: {
        if (take_key(&cur, &k, &kn) || take(&cur, 8, &p) || cur.left) return -1;
        int64_t delta = (int64_t)wf__get_u64(p), v = 0;
        entry *e = lookup(sv, k, kn);
        if ((e && parse_int(e->val, e->vlen, &v)) || __builtin_add_overflow(v, delta, &v))
            return reply(c, WF_STORE_BAD_VALUE, 0) ? 0 : -1;
        char text[24];
        int tn = snprintf(text, sizeof text, "%" PRId64, v);
        if (put(sv, k, kn, text, (size_t)tn) || !(b = reply(c, WF_STORE_OK, 8))) return -1;
        wf__put_u64(b, (uint64_t)v);
        return 0;
    }
    case WF_STORE_CHECK: {   /* one pass to validate and count, one to write the indices */
        uint32_t n, m = 0;
        if (take_u32(&cur, &n) || n > WF_STORE_MAX_KEYS) return -1;
        cursor start = cur;
        for (uint32_t i = 0; i < n; i++) {
            if (take_key(&cur, &k, &kn)) return -1;
            m += !lookup(sv, k, kn);
        }
        if (cur.left || !(b = reply(c, WF_STORE_OK, 4 + 4 * (size_t)m))) return -1;
        wf__put_u32(b, m);
        cur = start;
        for (uint32_t i = 0; i < n; i++) {
            take_key(&cur, &k, &kn);
            if (!lookup(sv, k, kn)) { wf__put_u32(b + 4, i); b += 4; }
        }
        return 0;
    }
    default:
        return -1;   /* frame_ok let nothing else through */
    }
}

/* Where a connection's bytes come from: recv() on its socket, or a buffer
 * (wf__store_server_feed). Like recv(): bytes read, 0 at the end, -1 with errno. */
typedef ssize_t (*read_fn)(void *ctx, conn *c, void *buf, size_t n);

static ssize_t read_socket(void *ctx, conn *c, void *buf, size_t n) {
    (void)ctx;
    return recv(c->fd, buf, n, MSG_DONTWAIT);
}

/* Read what has arrived on c; answer when a frame is whole. 0, or -1 to drop. */
static int receive(wf__store_server *sv, conn *c, read_fn rd, void *ctx) {
    ssize_t r;
    if (c->hdr_got < WF_STORE_HDR) {
        r = rd(ctx, c, c->hdr + c->hdr_got, WF_STORE_HDR - c->hdr_got);
        if (r <= 0) return (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) ? 0 : -1;
        c->hdr_got += (size_t)r;
        if (c->hdr_got < WF_STORE_HDR) return 0;
        uint32_t n = wf__get_u32(c->hdr);
        c->code = c->hdr[4];
        if (!frame_ok(c, c->code, n)) return -1;   /* checked before any allocation */
        c->in_len = n - 1;
        c->in_got = 0;
    } else {
        if (c->in_got == c->in_cap) {   /* grow with the bytes that actually arrive */
            size_t cap = c->in_cap ? 2 * c->in_cap : 64 * 1024;
            if (cap > c->in_len) cap = c->in_len;
            uint8_t *p = wf__realloc(c->in, c->in_cap, cap);
            if (!p) return -1;
            c->in = p;
            c->in_cap = cap;
        }
        r = rd(ctx, c, c->in + c->in_got, c->in_cap - c->in_got);
        if (r <= 0) return (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) ? 0 : -1;
        c->in_got += (size_t)r;
    }
    if (c->in_got < c->in_len) return 0;
    int rc = handle(sv, c);
    c->hdr_got = 0;
    if (c->in_cap > KEEP_BUFFER) { wf__free(c->in, c->in_cap); c->in = NULL; c->in_cap = 0; }
    return rc ? rc : flush(c);
}

/* ---------------------------------------------------------------- buffers (for the fuzzer) */

typedef struct { const uint8_t *p; size_t left; } feed_src;

static ssize_t read_buffer(void *ctx, conn *c, void *buf, size_t n) {
    feed_src *s = ctx;
    (void)c;
    if (!s->left) { errno = EAGAIN; return -1; }
    if (n > s->left) n = s->left;
    memcpy(buf, s->p, n);
    s->p += n;
    s->left -= n;
    return (ssize_t)n;
}

wf__store_server *wf__store_server_new_detached(void) {
    wf__store_server *sv = wf__calloc(1, sizeof *sv);
    if (!sv) { wf__error(WF_ENOMEM, "wf__store_server_new_detached: out of memory"); return NULL; }
    sv->lfd = sv->wake[0] = sv->wake[1] = -1;
    return sv;
}

int wf__store_server_feed(wf__store_server *sv, const uint8_t *data, size_t n, size_t *frames) {
    conn c = { .fd = -1 };
    feed_src src = { data, n };
    int rc = 0;
    size_t done = 0;
    while (src.left && !rc) {
        size_t had = c.hdr_got;
        rc = receive(sv, &c, read_buffer, &src);
        if (!rc && had && !c.hdr_got) done++;   /* every body has >= 4 bytes: a frame ends on its own call */
    }
    wf__free(c.in, c.in_cap);
    wf__free(c.out, c.out_cap);
    if (frames) *frames = done;
    return rc;
}

/* ---------------------------------------------------------------- connections */

static void drop(wf__store_server *sv, int i) {
    conn *c = &sv->conns[i];
    close(c->fd);
    wf__free(c->in, c->in_cap);
    wf__free(c->out, c->out_cap);
    sv->conns[i] = sv->conns[--sv->nconns];
}

static void accept_all(wf__store_server *sv) {
    for (;;) {
        int fd = accept4(sv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* out of descriptors: the pending connection stays and poll() would wake at
             * once again; pause so that we do not spin */
            if (errno == EMFILE || errno == ENFILE) nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
            return;   /* else EAGAIN, or a connection that went away before we took it */
        }
        if (sv->nconns == sv->capconns) {
            int cap = sv->capconns ? 2 * sv->capconns : 16;
            conn *cs = wf__realloc(sv->conns, sizeof *cs * (size_t)sv->capconns, sizeof *cs * (size_t)cap);
            struct pollfd *ps = cs ? wf__realloc(sv->pfds, sizeof *ps * (size_t)(sv->capconns + 2),
                                                 sizeof *ps * (size_t)(cap + 2)) : NULL;
            if (cs) sv->conns = cs;
            if (!ps) { close(fd); return; }
            sv->pfds = ps;
            sv->capconns = cap;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sv->conns[sv->nconns++] = (conn){ .fd = fd };
    }
}

static void *serve(void *arg) {
    wf__store_server *sv = arg;
    for (;;) {
        int n = sv->nconns;
        sv->pfds[0] = (struct pollfd){ .fd = sv->wake[0], .events = POLLIN };
        sv->pfds[1] = (struct pollfd){ .fd = sv->lfd, .events = POLLIN };
        for (int i = 0; i < n; i++)
            sv->pfds[2 + i] = (struct pollfd){ .fd = sv->conns[i].fd,
                                               .events = sv->conns[i].out_len ? POLLOUT : POLLIN };
        if (poll(sv->pfds, (nfds_t)n + 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (sv->pfds[0].revents) break;
        short lev = sv->pfds[1].revents;
        /* walk down so that drop()'s swap with the last connection skips nothing */
        for (int i = n - 1; i >= 0; i--) {
            short ev = sv->pfds[2 + i].revents;
            if (!ev) continue;
            conn *c = &sv->conns[i];
            int rc;
            if (ev & POLLNVAL) rc = -1;
            else if (c->out_len) rc = (ev & (POLLERR | POLLHUP)) ? -1 : flush(c);   /* a reply is going out */
            else rc = receive(sv, c, read_socket, NULL);   /* POLLHUP / POLLERR show up as recv() failing */
            if (rc) drop(sv, i);
        }
        if (lev & POLLIN) accept_all(sv);   /* after the walk: accepting may move sv->conns */
    }
    while (sv->nconns) drop(sv, sv->nconns - 1);
    return NULL;
}

/* ---------------------------------------------------------------- start / stop */

/* Bind and listen on host:port; returns the socket or -1 with *err an errno. */
static int listen_on(const char *host, int port, int *err) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    bool any = !host || !*host || !strcmp(host, "0.0.0.0");
    /* IPv4 first ("localhost" then serves clients that say 127.0.0.1); a NULL host with
     * AI_PASSIVE is INADDR_ANY */
    hints.ai_family = AF_INET;
    int g = getaddrinfo(any ? NULL : host, ps, &hints, &ai);
    if (g && !any) {
        hints.ai_family = AF_UNSPEC;
        g = getaddrinfo(host, ps, &hints, &ai);
    }
    if (g) { *err = g == EAI_SYSTEM ? errno : EADDRNOTAVAIL; return -1; }
    int fd = -1;
    *err = EADDRNOTAVAIL;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { *err = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);   /* restart over TIME_WAIT */
        if (!bind(fd, a->ai_addr, a->ai_addrlen) && !listen(fd, 128)) break;
        *err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int wf__store_server_start(const char *host, int port, wf__store_server **out) {
    *out = NULL;
    int err, fd = listen_on(host, port, &err);
    if (fd < 0) {
        if (err == EADDRINUSE)
            return wf__error(WF_EDIST, "wf_store_new: cannot serve on %s:%d: port %d is already in use "
                             "(another store or program listens there)", host, port, port);
        return wf__error(WF_EDIST, "wf_store_new: cannot serve on %s:%d: %s", host, port, strerror(err));
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    wf__store_server *sv = wf__calloc(1, sizeof *sv);
    struct pollfd *pfds = wf__malloc(2 * sizeof *pfds);
    if (!sv || !pfds || getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        close(fd);
        wf__free(sv, sizeof *sv);
        wf__free(pfds, 2 * sizeof *pfds);
        return wf__error(WF_ENOMEM, "wf_store_new: out of memory starting the server on %s:%d", host, port);
    }
    sv->lfd = fd;
    sv->pfds = pfds;
    sv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    if (pipe2(sv->wake, O_CLOEXEC)) {
        int e = errno;
        close(fd);
        wf__free(pfds, 2 * sizeof *pfds);
        wf__free(sv, sizeof *sv);
        return wf__error(WF_EDIST, "wf_store_new: cannot make the server's wake pipe: %s", strerror(e));
    }
    int e = pthread_create(&sv->thread, NULL, serve, sv);
    if (e) {
        close(fd);
        close(sv->wake[0]);
        close(sv->wake[1]);
        wf__free(pfds, 2 * sizeof *pfds);
        wf__free(sv, sizeof *sv);
        return wf__error(WF_EDIST, "wf_store_new: cannot start the server thread: %s", strerror(e));
    }
    *out = sv;
    return 0;
}

int wf__store_server_port(const wf__store_server *sv) { return sv->port; }

void wf__store_server_stop(wf__store_server *sv) {
    if (!sv) return;
    char b = 1;
    if (sv->lfd >= 0) {   /* a detached server (wf__store_server_new_detached) has no thread */
        while (write(sv->wake[1], &b, 1) < 0 && errno == EINTR) {}
        pthread_join(sv->thread, NULL);
        close(sv->lfd);
        close(sv->wake[0]);
        close(sv->wake[1]);
    }
    free_table(sv);
    wf__free(sv->conns, sizeof *sv->conns * (size_t)sv->capconns);
    wf__free(sv->pfds, sizeof *sv->pfds * (size_t)(sv->capconns + 2));
    wf__free(sv, sizeof *sv);
}
