/* tests/dist/test_store.c: the TCP store in one process: a server and clients in threads,
 * raw sockets sending malformed frames, timeouts that must name what is missing. */
#include "test_util.h"
#include "weft/dist.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static wf_store *serve(double timeout) {
    wf_store *s = wf_store_new("127.0.0.1", 0, true, &(wf_store_opts){ .timeout_s = timeout });
    ck_assert_msg(s, "%s", wf_error_message());
    ck_assert_int_gt(wf_store_port(s), 0);
    return s;
}

static wf_store *client(int port, double timeout) {
    wf_store *c = wf_store_new("localhost", port, false, &(wf_store_opts){ .timeout_s = timeout });
    ck_assert_msg(c, "%s", wf_error_message());
    return c;
}

/* ---------------------------------------------------------------- many clients */

typedef struct { int port, id; wf_store *shared; char err[256]; } worker;

#define FAIL(...) do { snprintf(w->err, sizeof w->err, __VA_ARGS__); goto done; } while (0)

/* Each worker sets its key, bumps the counter 10 times, waits for the others' keys and
 * reads them. Workers with a shared store use it from two threads at once. */
static void *work(void *arg) {
    worker *w = arg;
    wf_store *c = w->shared ? w->shared : wf_store_new("127.0.0.1", w->port, false, &(wf_store_opts){ .timeout_s = 5 });
    char key[32], val[32];
    if (!c) FAIL("connect: %s", wf_error_message());
    snprintf(key, sizeof key, "k/%d", w->id);
    snprintf(val, sizeof val, "value of %d", w->id);
    if (wf_store_set(c, key, val, strlen(val))) FAIL("set: %s", wf_error_message());
    for (int i = 0; i < 10; i++)
        if (wf_store_add(c, "counter", 1, NULL)) FAIL("add: %s", wf_error_message());
    const char *keys[] = { "k/0", "k/1", "k/2", "k/3", "k/4" };
    if (wf_store_wait(c, keys, 5, 5.0)) FAIL("wait: %s", wf_error_message());
    for (int j = 0; j < 5; j++) {
        void *v;
        size_t n;
        char expect[32];
        snprintf(expect, sizeof expect, "value of %d", j);
        if (wf_store_get(c, keys[j], &v, &n)) FAIL("get: %s", wf_error_message());
        bool same = n == strlen(expect) && !memcmp(v, expect, n);
        free(v);
        if (!same) FAIL("get %s: wrong value", keys[j]);
        if (wf_store_check(c, keys[j]) != 1) FAIL("check %s: not 1", keys[j]);
    }
    if (wf_store_check(c, "never/set") != 0) FAIL("check never/set: not 0");
done:
    if (!w->shared) wf_store_free(c);
    return NULL;
}

START_TEST(test_many_clients) {
    wf_store *s = serve(5);
    wf_store *shared = client(wf_store_port(s), 5);
    worker w[5];
    pthread_t th[5];
    for (int i = 0; i < 5; i++) {   /* 0..2 own connections; 3, 4 share one */
        w[i] = (worker){ .port = wf_store_port(s), .id = i, .shared = i >= 3 ? shared : NULL };
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 5; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(!w[i].err[0], "worker %d: %s", i, w[i].err);
    }
    /* the counter reads back as decimal text through get */
    void *v;
    size_t n;
    ck_assert_int_eq(wf_store_get(s, "counter", &v, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert(!memcmp(v, "50", 2));
    free(v);
    int64_t out = 0;
    ck_assert_int_eq(wf_store_add(shared, "counter", -60, &out), 0);
    ck_assert_int_eq(out, -10);
    wf_store_free(shared);   /* a client leaves while the server lives */
    ck_assert_int_eq(wf_store_check(s, "k/4"), 1);
    wf_store_free(s);
}
END_TEST

/* ---------------------------------------------------------------- values and bad arguments */

START_TEST(test_values) {
    wf_store *s = serve(5);
    void *v;
    size_t n;
    /* 0 bytes */
    ck_assert_int_eq(wf_store_set(s, "empty", NULL, 0), 0);
    ck_assert_int_eq(wf_store_get(s, "empty", &v, &n), 0);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(n, 0);
    free(v);
    ck_assert_int_eq(wf_store_check(s, "empty"), 1);
    /* 1 MB, through another client */
    size_t big = 1 << 20;
    unsigned char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (unsigned char)(i * 7 + (i >> 12));
    wf_store *c = client(wf_store_port(s), 5);
    ck_assert_int_eq(wf_store_set(c, "big", data, big), 0);
    ck_assert_int_eq(wf_store_get(s, "big", &v, &n), 0);
    ck_assert_int_eq(n, big);
    ck_assert(!memcmp(v, data, big));
    free(v);
    free(data);
    /* overwrite */
    ck_assert_int_eq(wf_store_set(c, "big", "x", 1), 0);
    ck_assert_int_eq(wf_store_get(c, "big", &v, &n), 0);
    ck_assert(n == 1 && !memcmp(v, "x", 1));
    free(v);
    /* add: a missing key counts 0; a non-integer or an overflow is refused */
    int64_t out;
    ck_assert_int_eq(wf_store_add(c, "ctr", 7, &out), 0);
    ck_assert_int_eq(out, 7);
    ck_assert_int_eq(wf_store_add(c, "ctr", -9, &out), 0);
    ck_assert_int_eq(out, -2);
    ck_assert_int_eq(wf_store_set(c, "text", "12abc", 5), 0);
    ck_assert_int_eq(wf_store_add(c, "text", 1, &out), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "key 'text' holds a value that is not a decimal integer");
    ck_assert_int_eq(wf_store_set(c, "max", "9223372036854775807", 19), 0);
    ck_assert_int_eq(wf_store_add(c, "max", 1, &out), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "overflows");
    ck_assert_int_eq(wf_store_add(c, "max", 0, &out), 0);
    ck_assert(out == INT64_MAX);
    /* bad arguments, refused before anything is sent */
    char longkey[5000];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    ck_assert_int_eq(wf_store_set(c, longkey, "x", 1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "has 4999 bytes (must be 1..4096)");
    ck_assert_int_eq(wf_store_set(c, "", "x", 1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "has 0 bytes");
    ck_assert_int_eq(wf_store_set(c, NULL, "x", 1), WF_ENULL);
    ck_assert_error(WF_ENULL, "key is NULL");
    ck_assert_int_eq(wf_store_set(c, "huge", "x", (64u << 20) + 1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "has 67108865 bytes (at most 67108864)");
    ck_assert_int_eq(wf_store_set(NULL, "k", "x", 1), WF_ENULL);
    ck_assert_error(WF_ENULL, "store is NULL");
    ck_assert_int_eq(wf_store_wait(c, (const char *[]){ "a", "" }, 2, 1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf_store_wait: key");
    ck_assert_ptr_null(wf_store_new("127.0.0.1", 0, false, NULL));
    ck_assert_error(WF_EINVAL, "only the server may pick a free port");
    ck_assert_ptr_null(wf_store_new("127.0.0.1", 70000, true, NULL));
    ck_assert_error(WF_EINVAL, "port 70000 is not valid");
    /* the connection still works after all that */
    ck_assert_int_eq(wf_store_check(c, "ctr"), 1);
    wf_store_free(c);
    wf_store_free(s);
}
END_TEST

/* ---------------------------------------------------------------- timeouts */

START_TEST(test_get_and_wait_timeouts) {
    wf_store *s = serve(0.3);
    double t0 = now();
    void *v = (void *)1;
    size_t n;
    ck_assert_int_eq(wf_store_get(s, "never/comes", &v, &n), WF_ETIMEOUT);
    double dt = now() - t0;
    ck_assert_msg(dt > 0.25 && dt < 2.0, "get waited %.2f s", dt);
    ck_assert_ptr_null(v);
    ck_assert_error(WF_ETIMEOUT, "key 'never/comes' did not appear within 0.3 s");
    ck_assert_int_eq(wf_store_set(s, "here", "1", 1), 0);
    const char *keys[] = { "missing/1", "here", "missing/2" };
    ck_assert_int_eq(wf_store_wait(s, keys, 3, 0.2), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "wf_store_wait: 2 of 3 keys did not appear within 0.2 s: 'missing/1', 'missing/2'");
    ck_assert_int_eq(wf_store_wait(s, keys + 1, 1, 0.2), 0);
    ck_assert_int_eq(wf_store_wait(s, keys, 0, 0.2), 0);
    /* many missing keys: the message is bounded and counts the rest */
    const char *many[300];
    char names[300][16];
    for (int i = 0; i < 300; i++) { snprintf(names[i], 16, "absent/%d", i); many[i] = names[i]; }
    ck_assert_int_eq(wf_store_wait(s, many, 300, 0.05), WF_ETIMEOUT);
    ck_assert_msg(strstr(wf_error_message(), "300 of 300 keys") && strstr(wf_error_message(), "more"),
                  "%s", wf_error_message());
    wf_clear_error();
    wf_store_free(s);
}
END_TEST

/* A key that comes later is found by a waiting get. */
static void *set_later(void *arg) {
    wf_store *c = wf_store_new("127.0.0.1", *(int *)arg, false, &(wf_store_opts){ .timeout_s = 5 });
    struct timespec ts = { 0, 150 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    if (c) wf_store_set(c, "late", "ok", 2);
    wf_store_free(c);
    return NULL;
}

START_TEST(test_get_waits) {
    wf_store *s = serve(5);
    int port = wf_store_port(s);
    pthread_t th;
    pthread_create(&th, NULL, set_later, &port);
    void *v;
    size_t n;
    ck_assert_msg(!wf_store_get(s, "late", &v, &n), "%s", wf_error_message());
    ck_assert(n == 2 && !memcmp(v, "ok", 2));
    free(v);
    pthread_join(th, NULL);
    wf_store_free(s);
}
END_TEST

START_TEST(test_default_timeout_from_env) {
    setenv("WF_DIST_TIMEOUT", "0.2", 1);
    wf_store *s = wf_store_new("127.0.0.1", 0, true, NULL);
    ck_assert_msg(s, "%s", wf_error_message());
    void *v;
    size_t n;
    ck_assert_int_eq(wf_store_get(s, "nothing", &v, &n), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "within 0.2 s");
    wf_store_free(s);
    unsetenv("WF_DIST_TIMEOUT");
}
END_TEST

/* A port that nobody serves: bind one, note it, close it. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

START_TEST(test_connect_timeout) {
    int port = free_port();
    double t0 = now();
    ck_assert_ptr_null(wf_store_new("127.0.0.1", port, false, &(wf_store_opts){ .timeout_s = 0.5 }));
    double dt = now() - t0;
    ck_assert_msg(dt > 0.45 && dt < 3.0, "connect gave up after %.2f s", dt);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d within 0.5 s", port);
    ck_assert_error(WF_ETIMEOUT, where);
}
END_TEST

/* Something listens but never answers the handshake. */
START_TEST(test_not_a_store) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    ck_assert_ptr_null(wf_store_new("127.0.0.1", ntohs(a.sin_port), false, &(wf_store_opts){ .timeout_s = 0.3 }));
    ck_assert_error(WF_EDIST, "did not answer as a weft store");
    close(fd);
}
END_TEST

START_TEST(test_port_in_use) {
    wf_store *s = serve(5);
    int port = wf_store_port(s);
    ck_assert_ptr_null(wf_store_new("127.0.0.1", port, true, &(wf_store_opts){ .timeout_s = 1 }));
    char text[64];
    snprintf(text, sizeof text, "port %d is already in use", port);
    ck_assert_error(WF_EDIST, text);
    ck_assert_int_eq(wf_store_set(s, "still", "up", 2), 0);   /* the first server is unharmed */
    ck_assert_int_eq(wf_store_check(s, "still"), 1);
    wf_store_free(s);
}
END_TEST

START_TEST(test_server_goes_away) {
    wf_store *s = serve(5);
    wf_store *c = client(wf_store_port(s), 2);
    ck_assert_int_eq(wf_store_set(c, "a", "1", 1), 0);
    wf_store_free(s);   /* stops the thread, closes c's connection on the server side */
    double t0 = now();
    ck_assert_int_eq(wf_store_set(c, "a", "2", 1), WF_EDIST);
    ck_assert_msg(now() - t0 < 1.5, "a dead server took %.2f s to notice", now() - t0);
    ck_assert_error(WF_EDIST, "the store at localhost:");
    ck_assert_int_eq(wf_store_check(c, "a"), WF_EDIST);   /* and stays failed, at once */
    ck_assert_error(WF_EDIST, "lost earlier");
    wf_store_free(c);
    /* a 1 MB set into a connection the server closed: EPIPE, never a SIGPIPE that kills us */
    s = serve(5);
    c = client(wf_store_port(s), 2);
    wf_store_free(s);
    char *big = calloc(1, 1 << 20);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(wf_store_set(c, "big", big, 1 << 20), WF_EDIST);
    wf_clear_error();
    free(big);
    wf_store_free(c);
}
END_TEST

/* Clients in other processes that die without saying goodbye: one exits mid-session, one is
 * killed while it polls for a key. The server goes on. */
START_TEST(test_clients_die) {
    wf_store *s = serve(5);
    int port = wf_store_port(s);
    pid_t quitter = fork();
    if (quitter == 0) {
        wf_store *c = wf_store_new("127.0.0.1", port, false, &(wf_store_opts){ .timeout_s = 5 });
        if (!c || wf_store_set(c, "from/child", "hi", 2) || wf_store_add(c, "n", 1, NULL)) _exit(1);
        _exit(0);   /* no wf_store_free: the server sees the connection vanish */
    }
    pid_t waiter = fork();
    if (waiter == 0) {
        wf_store *c = wf_store_new("127.0.0.1", port, false, &(wf_store_opts){ .timeout_s = 30 });
        void *v;
        size_t n;
        if (c) wf_store_add(c, "n", 1, NULL);
        if (c) wf_store_get(c, "never", &v, &n);   /* killed while polling */
        _exit(2);
    }
    int st;
    ck_assert_int_eq(waitpid(quitter, &st, 0), quitter);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child could not use the store");
    void *v;
    size_t n;
    ck_assert_int_eq(wf_store_get(s, "from/child", &v, &n), 0);
    ck_assert(n == 2 && !memcmp(v, "hi", 2));
    free(v);
    const char *keys[] = { "n" };
    ck_assert_int_eq(wf_store_wait(s, keys, 1, 5), 0);
    int64_t count = 0;
    for (double t0 = now(); count < 2 && now() - t0 < 5; nanosleep(&(struct timespec){ 0, 5000000 }, NULL))
        ck_assert_int_eq(wf_store_add(s, "n", 0, &count), 0);
    ck_assert_int_eq(count, 2);   /* the waiter is connected and polling */
    kill(waiter, SIGKILL);
    ck_assert_int_eq(waitpid(waiter, &st, 0), waiter);
    ck_assert(WIFSIGNALED(st));
    wf_store *c = client(port, 5);
    ck_assert_int_eq(wf_store_add(c, "n", 1, &count), 0);
    ck_assert_int_eq(count, 3);
    wf_store_free(c);
    wf_store_free(s);
}
END_TEST

/* ---------------------------------------------------------------- malformed frames */

static int raw(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static void send_all(int fd, const void *p, size_t n) {
    ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A good hello: length 9, HELLO, magic "wfst", version 1; the reply is 13 bytes. */
static void hello(int fd) {
    unsigned char h[13] = { 0, 0, 0, 9, 1, 'w', 'f', 's', 't', 0, 0, 0, 1 };
    send_all(fd, h, sizeof h);
    unsigned char r[13];
    ck_assert_int_eq(recv(fd, r, sizeof r, MSG_WAITALL), 13);
    ck_assert_int_eq(r[4], 0);
}

/* The server must close fd: recv sees the end (or a reset) within 2 s. */
static void expect_dropped(int fd, const char *what) {
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    ck_assert_msg(poll(&pf, 1, 2000) == 1, "%s: the server kept the connection", what);
    char b[64];
    ck_assert_msg(recv(fd, b, sizeof b, 0) <= 0, "%s: the server answered", what);
    close(fd);
}

START_TEST(test_malformed_frames) {
    wf_store *s = serve(5);
    int port = wf_store_port(s);
    wf_store *good = client(port, 5);
    unsigned char f[64];
    int fd;

    fd = raw(port);   /* text instead of a hello */
    send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    expect_dropped(fd, "garbage");

    fd = raw(port);   /* a hello of the wrong magic */
    unsigned char bad[13] = { 0, 0, 0, 9, 1, 'n', 'o', 'p', 'e', 0, 0, 0, 1 };
    send_all(fd, bad, sizeof bad);
    expect_dropped(fd, "bad magic");

    fd = raw(port);   /* a hello of a future version */
    unsigned char v2[13] = { 0, 0, 0, 9, 1, 'w', 'f', 's', 't', 0, 0, 0, 2 };
    send_all(fd, v2, sizeof v2);
    expect_dropped(fd, "bad version");

    fd = raw(port);   /* a SET claiming 4 GB: refused from the header, nothing allocated */
    hello(fd);
    put32(f, 0xFFFFFFFFu);
    f[4] = 2;
    send_all(fd, f, 5);
    expect_dropped(fd, "absurd length");

    fd = raw(port);   /* a GET claiming more than the largest key */
    hello(fd);
    put32(f, 1 + 4 + 4097);
    f[4] = 3;
    send_all(fd, f, 5);
    expect_dropped(fd, "oversized get");

    fd = raw(port);   /* an unknown command */
    hello(fd);
    put32(f, 1);
    f[4] = 99;
    send_all(fd, f, 5);
    expect_dropped(fd, "unknown command");

    fd = raw(port);   /* a GET whose key length field runs past the frame */
    hello(fd);
    put32(f, 1 + 4 + 3);
    f[4] = 3;
    put32(f + 5, 50);
    memcpy(f + 9, "abc", 3);
    send_all(fd, f, 12);
    expect_dropped(fd, "key past the frame");

    fd = raw(port);   /* a CHECK of 2000 keys (at most 1024) */
    hello(fd);
    put32(f, 1 + 4);
    f[4] = 5;
    put32(f + 5, 2000);
    send_all(fd, f, 9);
    expect_dropped(fd, "too many keys");

    fd = raw(port);   /* an ADD with bytes left over */
    hello(fd);
    put32(f, 1 + 4 + 1 + 8 + 2);
    f[4] = 4;
    put32(f + 5, 1);
    f[9] = 'c';
    memset(f + 10, 0, 10);
    send_all(fd, f, 20);
    expect_dropped(fd, "trailing bytes");

    fd = raw(port);   /* half a SET, then gone */
    hello(fd);
    put32(f, 1 + 4 + 1 + 1000);
    f[4] = 2;
    put32(f + 5, 1);
    f[9] = 'h';
    send_all(fd, f, 10);
    close(fd);

    /* the well-behaved client still gets answers, and a new one can join */
    ck_assert_int_eq(wf_store_set(good, "after", "ok", 2), 0);
    ck_assert_int_eq(wf_store_check(s, "after"), 1);
    ck_assert_int_eq(wf_store_check(s, "h"), 0);   /* the half SET stored nothing */
    wf_store *late = client(port, 5);
    ck_assert_int_eq(wf_store_check(late, "after"), 1);
    wf_store_free(late);

    /* a raw connection left mid-frame when the server stops: freed with it */
    fd = raw(port);
    hello(fd);
    send_all(fd, f, 10);
    ck_assert_int_eq(wf_store_check(good, "after"), 1);
    wf_store_free(good);
    wf_store_free(s);
    close(fd);
}
END_TEST

START_TEST(test_hosts) {
    /* every interface, reached through loopback */
    wf_store *any = wf_store_new("0.0.0.0", 0, true, &(wf_store_opts){ .timeout_s = 5 });
    ck_assert_msg(any, "%s", wf_error_message());
    wf_store *c = client(wf_store_port(any), 5);
    ck_assert_int_eq(wf_store_set(c, "via", "any", 3), 0);
    ck_assert_int_eq(wf_store_check(any, "via"), 1);
    wf_store_free(c);
    wf_store_free(any);
    /* a name, resolved */
    wf_store *named = wf_store_new("localhost", 0, true, &(wf_store_opts){ .timeout_s = 5 });
    ck_assert_msg(named, "%s", wf_error_message());
    wf_store *c4 = wf_store_new("127.0.0.1", wf_store_port(named), false, &(wf_store_opts){ .timeout_s = 5 });
    ck_assert_msg(c4, "%s", wf_error_message());
    wf_store_free(c4);
    wf_store_free(named);
    /* an address this machine does not have (TEST-NET-3) */
    ck_assert_ptr_null(wf_store_new("203.0.113.1", 0, true, &(wf_store_opts){ .timeout_s = 1 }));
    ck_assert_error(WF_EDIST, "cannot serve on 203.0.113.1:0");
}
END_TEST

/* ---------------------------------------------------------------- wait_ranks */

typedef struct { wf_store *st; int rank, world, rc; const char *prefix; double timeout; char msg[256]; } arrival;

static void *arrive(void *arg) {
    arrival *a = arg;
    a->rc = wf_store_wait_ranks(a->st, a->prefix, a->rank, a->world, a->timeout);
    snprintf(a->msg, sizeof a->msg, "%s", wf_error_message());
    return NULL;
}

START_TEST(test_wait_ranks) {
    wf_store *s = serve(5);
    wf_store *c1 = client(wf_store_port(s), 5), *c2 = client(wf_store_port(s), 5);
    /* world 3, only ranks 0 and 1 come: both time out naming rank 2 */
    arrival a[3] = { { s, 0, 3, 0, "start", 0.5, "" }, { c1, 1, 3, 0, "start", 0.5, "" }, { c2, 2, 3, 0, "go", 0.5, "" } };
    pthread_t th[3];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, arrive, &a[i]);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].rc, WF_ETIMEOUT);
        ck_assert_msg(strstr(a[i].msg, "wf_store_wait_ranks: rank 2 of 3 did not arrive within 0.5 s"),
                      "rank %d: %s", i, a[i].msg);
    }
    /* all three come */
    for (int i = 0; i < 3; i++) {
        a[i].prefix = "go";
        a[i].timeout = 10;   /* generous: a loaded machine must not fail this */
        pthread_create(&th[i], NULL, arrive, &a[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(a[i].rc == 0, "rank %d: %s", i, a[i].msg);
    }
    /* world 6 where 2 and 5 never come */
    for (int r = 1; r < 5; r++)
        if (r != 2) {
            char k[16];
            snprintf(k, sizeof k, "six/%d", r);
            ck_assert_int_eq(wf_store_set(c1, k, "1", 1), 0);
        }
    ck_assert_int_eq(wf_store_wait_ranks(s, "six", 0, 6, 0.2), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "wf_store_wait_ranks: ranks 2, 5 of 6 did not arrive within 0.2 s");
    /* a world larger than one CHECK (1024 keys): 1234 is missing, found in the second batch */
    for (int r = 1; r < 1500; r++)
        if (r != 1234) {
            char k[16];
            snprintf(k, sizeof k, "big/%d", r);
            ck_assert_int_eq(wf_store_set(c2, k, "1", 1), 0);
        }
    ck_assert_int_eq(wf_store_wait_ranks(s, "big", 0, 1500, 0.1), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "wf_store_wait_ranks: rank 1234 of 1500 did not arrive");
    ck_assert_int_eq(wf_store_wait_ranks(c1, "big", 1234, 1500, 1), 0);
    /* bad arguments */
    ck_assert_int_eq(wf_store_wait_ranks(s, "x", 3, 3, 0.1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "rank 3 of world size 3");
    ck_assert_int_eq(wf_store_wait_ranks(s, "x", 0, 0, 0.1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "world size 0");
    ck_assert_int_eq(wf_store_wait_ranks(s, NULL, 0, 1, 0.1), WF_ENULL);
    ck_assert_error(WF_ENULL, "prefix is NULL");
    wf_store_free(c1);
    wf_store_free(c2);
    wf_store_free(s);
    /* world size from the options */
    wf_store *one = wf_store_new("127.0.0.1", 0, true, &(wf_store_opts){ .timeout_s = 5, .world_size = 1 });
    ck_assert_msg(one, "%s", wf_error_message());
    ck_assert_int_eq(wf_store_wait_ranks(one, "solo", 0, 0, 0), 0);
    wf_store_free(one);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dist_store");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_many_clients);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_get_and_wait_timeouts);
    tcase_add_test(tc, test_get_waits);
    tcase_add_test(tc, test_default_timeout_from_env);
    tcase_add_test(tc, test_connect_timeout);
    tcase_add_test(tc, test_not_a_store);
    tcase_add_test(tc, test_port_in_use);
    tcase_add_test(tc, test_hosts);
    tcase_add_test(tc, test_server_goes_away);
    tcase_add_test(tc, test_clients_die);
    tcase_add_test(tc, test_malformed_frames);
    tcase_add_test(tc, test_wait_ranks);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
