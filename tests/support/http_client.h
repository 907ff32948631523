/* http_client.h — the libcurl client and `orion serve` launcher shared by the
 * HTTP integration tests: one request per call on a fresh connection, the
 * reply's status, header block, body and parsed JSON, and a server on a free
 * loopback port that is stopped with SIGTERM. Failures abort the test
 * (Criterion asserts). */
#ifndef ORION_TEST_HTTP_CLIENT_H
#define ORION_TEST_HTTP_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

/* One answer. headers and body are never NULL and always NUL-terminated. */
typedef struct hc_reply {
	long status;
	CURLcode curl; /* the transfer's result */
	char *headers; /* every header block received, CRLF separated */
	size_t headers_len;
	char *body;
	size_t body_len;
	json_t *json; /* the parsed body, or NULL */
} hc_reply;

/* Appends n bytes of data to the NUL-terminated *buffer of *len bytes. */
void hc_append(char **buffer, size_t *len, const char *data, size_t n);

/* libcurl CURLOPT_HEADERFUNCTION and CURLOPT_WRITEFUNCTION callbacks that
 * append to the headers and body of the hc_reply given as their data. */
size_t hc_on_header(char *data, size_t size, size_t count, void *arg);
size_t hc_on_body(char *data, size_t size, size_t count, void *arg);

/* Makes the connections of hc_perform and hc_call (on every thread) come
 * from the local address (e.g. "127.0.0.2": any 127/8 address is local on
 * Linux), so the server sees that client address; NULL or "" restores the
 * kernel's choice. */
void hc_set_source_address(const char *address);

/* Performs method base_url+path (taken as is, dot segments kept) with the NULL-terminated headers (may be
 * NULL) and body of body_len bytes (none when NULL), within timeout_ms. HEAD
 * asks for no body. The transfer's result is in .curl; it is not asserted. */
hc_reply hc_perform(const char *base_url, const char *method, const char *path, const char *const *headers,
                    const char *body, size_t body_len, long timeout_ms);

/* Performs method base_url+path as hc_perform does, with "Expect:", an optional
 * bearer token, a body (body_len bytes, 0 meaning strlen) of content_type
 * (JSON when NULL) and one optional extra header; asserts the transfer
 * succeeded. */
hc_reply hc_call(const char *base_url, const char *method, const char *path, const char *token,
                 const char *body, size_t body_len, const char *content_type, const char *extra_header,
                 long timeout_ms);

/* The value of header name in the last response of r, or NULL (the
 * calling thread's storage, overwritten by its next call). */
const char *hc_header(const hc_reply *r, const char *name);

/* Registers a customer with email (if new) and logs it in: its access token
 * into out (GW_JWT_MAX_TOKEN = 4096 bytes suffice). Asserts both steps. */
void hc_customer_token(const char *base_url, const char *email, char *out, size_t cap);

/* Registers a new customer (asserts 202 verification_sent), logs it in
 * (token into token) and reads its public id from GET /me (into id). */
void hc_sign_up(const char *base_url, const char *email, const char *password, const char *name, char *token,
                size_t token_cap, char *id, size_t id_cap);

/* Logs email/password in and copies the access token into out; asserts 200. */
void hc_login_token(const char *base_url, const char *email, const char *password, char *out, size_t cap);

/* Frees what r holds and zeroes it. */
void hc_reply_free(hc_reply *r);

/* Tokenizes a card at the payment provider as a browser does (ADR 028): the
 * provider's URL and publishable key from GET /api/v1/payments/config of the
 * Orion at base_url, then POST {provider_url}/v1/payment_methods; the pm_ id
 * into out. Asserts every step. */
void hc_tokenize(const char *base_url, const char *number, char out[128]);

/* What hc_serve_start adds after env: the C integration tests are not about
 * verification (ADR 031), so their fresh customers place orders at once;
 * a test of it sets ORION_REQUIRE_EMAIL_VERIFICATION=1 in env. */
#define HC_NO_VERIFICATION "ORION_REQUIRE_EMAIL_VERIFICATION=0"

/* Starts `orion serve` with args (NULL-terminated, may be NULL; a NULL first
 * entry means none) with ORION_DATA_DIR=data_dir, ORION_HTTP_ADDR=127.0.0.1:0
 * (the kernel picks the port) and env (NULL-terminated, may be NULL) added to
 * the environment, then HC_NO_VERIFICATION, logging to data_dir/serve.log, and waits until it
 * announces its URL. Writes "http://127.0.0.1:port" to base_url and the port
 * it announced to *port (may be NULL). Returns the server's pid. */
pid_t hc_serve_start(const char *data_dir, const char *const *args, const char *const *env, char *base_url,
                     size_t base_url_size, int *port);

/* SIGTERM to pid, then waits up to 15 s for it and kills it if it is still
 * running. Returns its exit code, or < 0 when it did not exit in time. */
int hc_serve_stop(pid_t pid);

/* hc_serve_stop(*pid) if it runs (then *pid is 0), and removes and frees the
 * directory *data_dir (then NULL): what a suite's .fini does. */
void hc_serve_teardown(pid_t *pid, char **data_dir);

/* GET base_url+path as an event stream: Accept: text/event-stream, a bearer
 * token and a Last-Event-ID when not NULL. The body goes to on_data (libcurl's
 * write callback with arg; returning less than given stops the transfer), the
 * status and headers into *r (not its body). Returns within timeout_ms with
 * the transfer's result, asserted to be CURLE_OK (the server ended the
 * stream), CURLE_WRITE_ERROR (on_data stopped it) or CURLE_OPERATION_TIMEDOUT. */
CURLcode hc_stream(const char *base_url, const char *path, const char *token, const char *last_event_id,
                   long timeout_ms, curl_write_callback on_data, void *arg, hc_reply *r);

#endif
