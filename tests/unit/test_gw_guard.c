/* test_gw_guard.c — the pure framing check of gateway/gw_guard.c: which
 * request heads pass and with which refusal the others are answered. */
#include <criterion/criterion.h>

#include <string.h>

#include "gw_guard-internal.h"

#define MAX_BODY 1048576

static gw_guard_head check(const char *head)
{
	gw_guard_head out;
	gw_guard_check_head(head, strlen(head), MAX_BODY, &out);
	return out;
}

static void expect_refusal(const char *head, const char *code)
{
	gw_guard_head out = check(head);
	cr_assert_not_null(out.refusal, "refused: %s", head);
	cr_assert_str_eq(out.refusal, code, "%s", head);
}

Test(gw_guard, valid_heads_and_their_framing)
{
	gw_guard_head h = check("GET /api/v1/products?limit=5 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
	cr_assert_null(h.refusal);
	cr_assert_eq(h.content_length, -1);
	cr_assert_not(h.chunked);
	h = check("POST /x HTTP/1.1\r\nHost: a\r\ncontent-length:   12  \r\nExpect: 100-Continue\r\n\r\n");
	cr_assert_null(h.refusal);
	cr_assert_eq(h.content_length, 12);
	cr_assert(h.expect_continue);
	h = check("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
	cr_assert_null(h.refusal);
	cr_assert(h.chunked);
	h = check("GET / HTTP/1.0\r\n\r\n"); /* HTTP/1.0 needs no Host */
	cr_assert_null(h.refusal);
	h = check("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
	cr_assert_not(h.expect_continue, "ignored in HTTP/1.0");
	h = check("GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\t1\r\n\r\n");
	cr_assert_null(h.refusal, "obs-text and HTAB are field content");
}

Test(gw_guard, request_lines)
{
	expect_refusal("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "request_line");
	expect_refusal("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", "request_line");
	expect_refusal("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "request_line");
	expect_refusal("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", "method");
	expect_refusal("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", "method");
	expect_refusal("get / HTTP/1.1\r\nHost: a\r\n\r\n", "method");
	expect_refusal("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "target");
	expect_refusal("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", "target");
	expect_refusal("GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", "target");
	expect_refusal("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "target");
	expect_refusal("GET / HTTP/1.2\r\nHost: a\r\n\r\n", "version");
	expect_refusal("GET / http/1.1\r\nHost: a\r\n\r\n", "version");
}

Test(gw_guard, header_fields)
{
	expect_refusal("GET / HTTP/1.1\r\nHost : a\r\n\r\n", "header_syntax");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n", "header_syntax");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", "header_syntax");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", "header_syntax");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", "obs_fold");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", "line_ending");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "line_ending");
	expect_refusal("GET / HTTP/1.1\r\nX-Orion-Guard: header_timeout\r\nHost: a\r\n\r\n",
	               "reserved_header");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", "expect");
	expect_refusal("GET / HTTP/1.1\r\n\r\n", "host");
	expect_refusal("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "host");
	expect_refusal("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "host");
	char many[8192] = "GET / HTTP/1.1\r\nHost: a\r\n";
	for (int i = 0; i < 101; i++)
		strcat(many, "X: y\r\n");
	strcat(many, "\r\n");
	expect_refusal(many, "too_many_headers");
}

Test(gw_guard, body_framing)
{
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
	               "content_length");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", "content_length");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "content_length");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", "content_length");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
	               "content_length");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", "body_too_large");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
	               "transfer_encoding");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
	               "transfer_encoding");
	expect_refusal("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	               "chunked\r\n\r\n",
	               "transfer_encoding");
	expect_refusal(
	        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
	        "transfer_encoding");
	expect_refusal("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "transfer_encoding");
}

Test(gw_guard, every_refusal_has_a_status_and_a_detail)
{
	static const struct {
		const char *code;
		int status;
	} cases[] = {{"content_length", 400},
	             {"method", 501},
	             {"version", 505},
	             {"expect", 417},
	             {"headers_too_large", 431},
	             {"body_too_large", 413},
	             {"header_timeout", 408},
	             {"body_timeout", 408},
	             {"connections_per_address", 503},
	             {"no such code", 400}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int status = 0;
		const char *detail = NULL;
		gw_guard_refusal(cases[i].code, &status, &detail);
		cr_assert_eq(status, cases[i].status, "%s", cases[i].code);
		cr_assert_not_null(detail);
	}
}
