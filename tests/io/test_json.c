/* tests/io/test_json.c: the private JSON parser/writer (io/json.h) and the checksums. */
#include "test_util.h"

#include <locale.h>

#include "io/json.h"
#include "tensor/tensor_impl.h"
#include "weft/io.h"

static wf_json *parse_ok(const char *s) {
    wf_json *v = NULL;
    char err[160];
    int rc = wf__json_parse(s, strlen(s), 0, &v, err, sizeof err);
    ck_assert_msg(rc == 0, "parse of '%s' failed: %s", s, err);
    return v;
}

/* Parse must fail with WF_ECORRUPT and a message containing text. */
static void parse_bad(const char *s, size_t n, const char *text) {
    wf_json *v = (wf_json *)1;
    char err[160];
    int rc = wf__json_parse(s, n, 0, &v, err, sizeof err);
    ck_assert_msg(rc == WF_ECORRUPT, "parse of '%.*s' gave %d", (int)n, s, rc);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(err, text), "message '%s' lacks '%s'", err, text);
    ck_assert_msg(strstr(err, "at byte "), "message '%s' has no position", err);
}

START_TEST(test_scalars) {
    wf_json *v = parse_ok("  true ");
    ck_assert_int_eq(v->type, WF_JSON_BOOL);
    ck_assert(v->boolean);
    wf__json_free(v);
    v = parse_ok("false");
    ck_assert(!v->boolean);
    wf__json_free(v);
    v = parse_ok("null");
    ck_assert_int_eq(v->type, WF_JSON_NULL);
    wf__json_free(v);
    v = parse_ok("\"hi\"");
    ck_assert_str_eq(wf__json_str(v), "hi");
    wf__json_free(v);
}
END_TEST

START_TEST(test_numbers) {
    struct { const char *s; double d; bool i_ok; int64_t i; } cases[] = {
        { "0", 0, true, 0 },
        { "-0", 0, true, 0 },
        { "42", 42, true, 42 },
        { "-17", -17, true, -17 },
        { "9223372036854775807", 9223372036854775807.0, true, INT64_MAX },
        { "-9223372036854775808", -9223372036854775808.0, true, INT64_MIN },
        { "9223372036854775808", 9223372036854775808.0, false, 0 },
        { "1.5", 1.5, false, 0 },
        { "1e3", 1000, true, 1000 },
        { "2.0", 2, true, 2 },
        { "-1.25e-2", -0.0125, false, 0 },
        { "1E+2", 100, true, 100 },
        { "0.1", 0.1, false, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wf_json *v = parse_ok(cases[i].s);
        ck_assert_int_eq(v->type, WF_JSON_NUMBER);
        ck_assert_msg(v->number == cases[i].d, "%s -> %.17g", cases[i].s, v->number);
        ck_assert_msg(v->i64_ok == cases[i].i_ok, "%s: i64_ok %d", cases[i].s, v->i64_ok);
        if (cases[i].i_ok) ck_assert_int_eq(v->i64, cases[i].i);
        wf__json_free(v);
    }
}
END_TEST

START_TEST(test_strings_escapes) {
    wf_json *v = parse_ok("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"");
    ck_assert_str_eq(v->str, "a\"b\\c/d\b\f\n\r\t");
    wf__json_free(v);
    v = parse_ok("\"\\u00e9\\u20AC\\ud83d\\ude00\"");   /* é € 😀 */
    ck_assert_str_eq(v->str, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    wf__json_free(v);
    v = parse_ok("\"x\\u0000y\"");
    ck_assert_int_eq(v->str_len, 3);
    ck_assert(v->str[1] == '\0' && v->str[2] == 'y');
    wf__json_free(v);
    v = parse_ok("\"raw \xc3\xa9 utf8\"");
    ck_assert_str_eq(v->str, "raw \xc3\xa9 utf8");
    wf__json_free(v);
}
END_TEST

START_TEST(test_structures) {
    wf_json *v = parse_ok("{\"a\": [1, 2, {\"b\": null}], \"c\": {}, \"d\": [], \"e\": \"s\"}");
    ck_assert_int_eq(v->type, WF_JSON_OBJECT);
    ck_assert_int_eq(v->n, 4);
    const wf_json *a = wf__json_get(v, "a");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->type, WF_JSON_ARRAY);
    ck_assert_int_eq(a->n, 3);
    int64_t i;
    ck_assert(wf__json_int(wf__json_at(a, 1), &i) && i == 2);
    ck_assert_int_eq(wf__json_get(wf__json_at(a, 2), "b")->type, WF_JSON_NULL);
    ck_assert_int_eq(wf__json_get(v, "c")->n, 0);
    ck_assert_int_eq(wf__json_get(v, "d")->type, WF_JSON_ARRAY);
    ck_assert_str_eq(wf__json_str(wf__json_get(v, "e")), "s");
    ck_assert_ptr_null(wf__json_get(v, "zz"));
    ck_assert_ptr_null(wf__json_at(v, 4));
    ck_assert_str_eq(wf__json_at(v, 3)->key, "e");
    wf__json_free(v);
}
END_TEST

START_TEST(test_not_nul_terminated) {
    /* only the first len bytes count */
    const char buf[] = "[1,2]GARBAGE";
    wf_json *v = NULL;
    ck_assert_int_eq(wf__json_parse(buf, 5, 0, &v, NULL, 0), 0);
    ck_assert_int_eq(v->n, 2);
    wf__json_free(v);
    /* a number at the very end of the buffer, followed by digits outside it */
    const char num[] = "12345";
    ck_assert_int_eq(wf__json_parse(num, 3, 0, &v, NULL, 0), 0);
    ck_assert_int_eq(v->i64, 123);
    wf__json_free(v);
    /* a string whose closing quote lies outside the buffer */
    parse_bad("\"abc\"", 4, "unterminated string");
    parse_bad("tru", 3, "unexpected character");
    parse_bad("", 0, "unexpected end of input");
}
END_TEST

START_TEST(test_malformed) {
#define BAD(s, text) parse_bad(s, strlen(s), text)
    BAD("[1,2", "unterminated array");
    BAD("[1,]", "unexpected character ']'");
    BAD("{\"a\":1,}", "expected a string key");
    BAD("{\"a\" 1}", "expected ':'");
    BAD("{a:1}", "expected a string key");
    BAD("[1 2]", "expected ',' or ']'");
    BAD("01", "leading zero");
    BAD("1.", "digit expected after '.'");
    BAD("1e", "digit expected in exponent");
    BAD("-", "bad number");
    BAD("+1", "unexpected character '+'");
    BAD(".5", "unexpected character '.'");
    BAD("1e999", "out of range");
    BAD("NaN", "unexpected character 'N'");
    BAD("\"\\x\"", "bad escape");
    BAD("\"\\u12\"", "bad \\u escape");
    BAD("\"\\ud800\"", "high surrogate");
    BAD("\"\\ud800\\u0041\"", "high surrogate");
    BAD("\"\\udc00\"", "lone low surrogate");
    BAD("\"a\tb\"", "control character");
    BAD("\"\xc0\xaf\"", "invalid UTF-8");          /* overlong '/' */
    BAD("\"\xed\xa0\x80\"", "invalid UTF-8");      /* encoded surrogate */
    BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8");  /* > U+10FFFF */
    BAD("\"\xe2\x82\"", "invalid UTF-8");          /* truncated sequence */
    BAD("{} {}", "trailing characters");
    BAD("[1] x", "trailing characters");
    BAD("/* c */ 1", "unexpected character '/'");
    BAD("\xff", "unexpected byte 0xff");
#undef BAD
    parse_bad("[1,\0]", 5, "unexpected byte 0x00");
}
END_TEST

START_TEST(test_depth_limit) {
    char deep[300];
    for (int i = 0; i < 150; i++) { deep[i] = '['; deep[299 - i] = ']'; }
    parse_bad(deep, 300, "nesting deeper than 64");
    wf_json *v = NULL;
    ck_assert_int_eq(wf__json_parse(deep + 100, 100, 0, &v, NULL, 0), 0);   /* 50 deep: fine */
    wf__json_free(v);
    char err[128];
    ck_assert_int_eq(wf__json_parse("[[[1]]]", 7, 2, &v, err, sizeof err), WF_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "nesting deeper than 2"));
    ck_assert_int_eq(wf__json_parse("[[1]]", 5, 2, &v, err, sizeof err), 0);
    wf__json_free(v);
}
END_TEST

START_TEST(test_error_position) {
    wf_json *v;
    char err[128];
    ck_assert_int_eq(wf__json_parse("{\"a\": tru}", 10, 0, &v, err, sizeof err), WF_ECORRUPT);
    ck_assert_msg(strstr(err, "at byte 6:"), "%s", err);
}
END_TEST

START_TEST(test_writer) {
    wf_sb b;
    wf__sb_init(&b);
    wf__sb_putc(&b, '[');
    wf__sb_json_string(&b, "q\"b\\s\n\x01\x7f\xc3\xa9", 10);
    wf__sb_putc(&b, ',');
    wf__sb_json_number(&b, 0.1);
    wf__sb_putc(&b, ',');
    wf__sb_json_number(&b, 3.0);
    wf__sb_putc(&b, ',');
    wf__sb_json_number(&b, 1e300);
    wf__sb_putc(&b, ',');
    wf__sb_json_number(&b, NAN);
    wf__sb_putc(&b, ',');
    wf__sb_json_int(&b, INT64_MIN);
    wf__sb_putc(&b, ',');
    wf__sb_printf(&b, "%s", "\"a long string to force the printf slow path.........................................................................................................................................................................................................................................................................\"");
    wf__sb_putc(&b, ']');
    ck_assert(!wf__sb_failed(&b));
    size_t len;
    char *s = wf__sb_take(&b, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(strlen(s), len);
    ck_assert_msg(!strncmp(s, "[\"q\\\"b\\\\s\\n\\u0001\\u007f\xc3\xa9\",0.10000000000000001,3,1.0000000000000001e+300,null,-9223372036854775808,", strlen("[\"q\\\"b\\\\s\\n\\u0001\\u007f\xc3\xa9\",0.10000000000000001,3,1.0000000000000001e+300,null,-9223372036854775808,")), "%s", s);
    /* what we write, we read back */
    wf_json *v = NULL;
    ck_assert_int_eq(wf__json_parse(s, len, 0, &v, NULL, 0), 0);
    ck_assert_str_eq(v->items[0].str, "q\"b\\s\n\x01\x7f\xc3\xa9");
    ck_assert(v->items[1].number == 0.1);
    ck_assert(v->items[3].number == 1e300);
    ck_assert_int_eq(v->items[4].type, WF_JSON_NULL);
    ck_assert(v->items[5].i64_ok && v->items[5].i64 == INT64_MIN);
    wf__json_free(v);
    wf__free(s, len + 1);
}
END_TEST

START_TEST(test_dom_roundtrip) {
    const char *src = "{\"k\":[1,-2.5,true,false,null,\"s\\u0000t\"],\"o\":{\"x\":{}}}";
    wf_json *v = parse_ok(src);
    wf_sb b;
    wf__sb_init(&b);
    wf__sb_json_value(&b, v);
    size_t len;
    char *s = wf__sb_take(&b, &len);
    ck_assert_str_eq(s, src);
    wf__free(s, len + 1);
    wf__json_free(v);
}
END_TEST

START_TEST(test_locale_independent) {
    /* numbers read and write with '.' even under a ',' locale (when one is installed) */
    const char *old = setlocale(LC_NUMERIC, NULL);
    char saved[64];
    snprintf(saved, sizeof saved, "%s", old ? old : "C");
    const char *names[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", NULL };
    bool set = false;
    for (int i = 0; names[i] && !set; i++) set = setlocale(LC_NUMERIC, names[i]) != NULL;
    wf_json *v = parse_ok("2.5");
    ck_assert(v->number == 2.5);
    wf__json_free(v);
    wf_sb b;
    wf__sb_init(&b);
    wf__sb_json_number(&b, 2.5);
    ck_assert_str_eq(b.buf, "2.5");
    wf__sb_free(&b);
    setlocale(LC_NUMERIC, saved);
}
END_TEST

START_TEST(test_utf8_valid) {
    ck_assert(wf__utf8_valid("abc", 3));
    ck_assert(wf__utf8_valid("\xf0\x9f\x98\x80", 4));
    ck_assert(!wf__utf8_valid("\x80", 1));
    ck_assert(!wf__utf8_valid("\xc3", 1));
    ck_assert(!wf__utf8_valid("\xe0\x80\x80", 3));
}
END_TEST

/* ---------------------------------------------------------------- checksums */

START_TEST(test_crc_vectors) {
    ck_assert_uint_eq(wf_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(wf_crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(wf_crc32(0, NULL, 0), 0);
    ck_assert_uint_eq(wf_crc32c(0, "", 0), 0);
    ck_assert_uint_eq(wf_crc32(0, "The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
    /* CRC-32C of 32 zero bytes (RFC 3720 B.4) */
    unsigned char z[32] = { 0 };
    ck_assert_uint_eq(wf_crc32c(0, z, 32), 0x8A9136AAu);
    unsigned char ff[32];
    memset(ff, 0xff, sizeof ff);
    ck_assert_uint_eq(wf_crc32c(0, ff, 32), 0x62A8AB43u);
    /* masked form (TFRecord): mask(crc) = rotr15(crc) + 0xa282ead8 */
    uint32_t c = 0xE3069283u;
    ck_assert_uint_eq(wf_crc32c_mask(c), (uint32_t)(((c >> 15) | (c << 17)) + 0xa282ead8u));
}
END_TEST

START_TEST(test_crc_incremental) {
    /* continuing over pieces (any split, any alignment) equals one pass */
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (unsigned char)(i * 131 + 7);
    uint32_t full32 = wf_crc32(0, buf, sizeof buf), full32c = wf_crc32c(0, buf, sizeof buf);
    for (size_t split = 0; split <= 1000; split += 37) {
        ck_assert_uint_eq(wf_crc32(wf_crc32(0, buf, split), buf + split, 1000 - split), full32);
        ck_assert_uint_eq(wf_crc32c(wf_crc32c(0, buf, split), buf + split, 1000 - split), full32c);
    }
    /* unaligned starts agree with a bytewise reference */
    for (int off = 0; off < 8; off++) {
        uint32_t ref = 0xffffffffu;
        for (int i = off; i < 1000; i++) {
            ref ^= buf[i];
            for (int k = 0; k < 8; k++) ref = (ref & 1) ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
        }
        ck_assert_uint_eq(wf_crc32c(0, buf + off, 1000 - (size_t)off), ~ref);
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("io_json");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, test_scalars);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_strings_escapes);
    tcase_add_test(tc, test_structures);
    tcase_add_test(tc, test_not_nul_terminated);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_error_position);
    tcase_add_test(tc, test_writer);
    tcase_add_test(tc, test_dom_roundtrip);
    tcase_add_test(tc, test_locale_independent);
    tcase_add_test(tc, test_utf8_valid);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("crc");
    tcase_add_test(tc2, test_crc_vectors);
    tcase_add_test(tc2, test_crc_incremental);
    suite_add_tcase(s, tc2);
    return s;
}

int main(void) { return tt_run(suite()); }
