/* psp_client.c — the provider's HTTP API, client side (see psp_client.h).
 *
 * Parsing uses jansson on bodies that never hold a card number (the provider
 * keeps brand and last 4 only, and Orion sends payment method ids). */
#include "psp_client.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define BODY_MAX     (1u << 20) /* a list of an order's intents is far smaller */
#define URL_MAX      1024
#define HEADER_MAX   (PSPC_KEY_MAX + 64)
#define INTENT_PATH  "/v1/payment_intents"
#define METHOD_PATH  "/v1/payment_methods/"
#define REFUND_PATH  "/v1/refunds"
#define REPLAY_HDR   "idempotent-replayed:"
#define ORDER_FILTER "?metadata[order_id]=" /* brackets raw: decoders split before decoding */

struct pspc_client {
	CURL *curl;
	char *base_url;
	char *auth_header; /* "Authorization: Bearer <key>" */
	long connect_timeout_ms;
};

/* ---- pure: keys and forms ---- */

orn_rc pspc_provider_key(const char *order_id, const char *customer_key, char out[PSPC_KEY_MAX])
{
	uint8_t digest[crypto_hash_sha256_BYTES];
	char hex[crypto_hash_sha256_BYTES * 2 + 1];

	if (!orn_id_valid(order_id))
		return ORN_EINVAL;
	if (customer_key == NULL || customer_key[0] == '\0') {
		snprintf(out, PSPC_KEY_MAX, "%s:pay", order_id);
		return ORN_OK;
	}
	crypto_hash_sha256(digest, (const unsigned char *)customer_key, strlen(customer_key));
	sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
	snprintf(out, PSPC_KEY_MAX, "%s:%s", order_id, hex);
	return ORN_OK;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

/* Appends s escaped to buf at *at; false if it does not fit (with the NUL). */
static bool put_escaped(char *buf, size_t cap, size_t *at, const char *s, bool brackets)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (unreserved(*p) || (brackets && (*p == '[' || *p == ']'))) {
			if (*at + 1 >= cap)
				return false;
			buf[(*at)++] = (char)*p;
		} else {
			if (*at + 3 >= cap)
				return false;
			buf[(*at)++] = '%';
			buf[(*at)++] = hex[*p >> 4];
			buf[(*at)++] = hex[*p & 15];
		}
	}
	return true;
}

orn_rc pspc_form_add(char *buf, size_t cap, size_t *len, const char *key, const char *value)
{
	size_t at = *len;

	if (buf == NULL || key == NULL || value == NULL || cap == 0 || at >= cap)
		return ORN_EINVAL;
	if (at > 0) {
		if (at + 1 >= cap)
			goto too_big;
		buf[at++] = '&';
	}
	if (!put_escaped(buf, cap, &at, key, true) || at + 1 >= cap)
		goto too_big;
	buf[at++] = '=';
	if (!put_escaped(buf, cap, &at, value, false))
		goto too_big;
	buf[at] = '\0';
	*len = at;
	return ORN_OK;
too_big:
	sodium_memzero(buf + *len, cap - *len); /* nothing half written is left */
	return ORN_ETOOBIG;
}

bool pspc_payment_method_valid(const char *s)
{
	size_t n = s != NULL ? strnlen(s, PSPC_ID_MAX) : 0;

	if (n < 4 || n >= PSPC_ID_MAX || strncmp(s, "pm_", 3) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

orn_rc pspc_intent_form(const pspc_intent_request *r, char *buf, size_t cap, size_t *len)
{
	char amount[24];
	orn_rc rc;

	*len = 0;
	if (cap > 0)
		buf[0] = '\0';
	if (r->currency == NULL || r->payment_method == NULL || r->order_id == NULL || r->amount < 1 ||
	    r->amount > PSPC_AMOUNT_MAX)
		return ORN_EINVAL;
	snprintf(amount, sizeof amount, "%lld", (long long)r->amount);
	if ((rc = pspc_form_add(buf, cap, len, "amount", amount)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "currency", r->currency)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "payment_method", r->payment_method)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "confirm", "true")) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "metadata[order_id]", r->order_id)) != ORN_OK ||
	    (r->return_url != NULL && r->return_url[0] != '\0' &&
	     (rc = pspc_form_add(buf, cap, len, "return_url", r->return_url)) != ORN_OK)) {
		*len = 0;
		if (cap > 0)
			buf[0] = '\0';
	}
	return rc;
}

/* ---- pure: parsing ---- */

static bool id_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= PSPC_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

static bool brand_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= PSPC_BRAND_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return false;
	return true;
}

static bool last4_valid(const char *s)
{
	if (strlen(s) != 4)
		return false;
	for (size_t i = 0; i < 4; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Copies the string member key of obj into out (cap bytes). Absent or null:
 * "" and true; another type or too long: false. */
static bool take_string(const json_t *obj, const char *key, char *out, size_t cap)
{
	const json_t *v = json_object_get(obj, key);
	size_t n;

	out[0] = '\0';
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v) || (n = json_string_length(v)) >= cap || strlen(json_string_value(v)) != n)
		return false;
	memcpy(out, json_string_value(v), n + 1);
	return true;
}

/* A printable token of 1..cap-1 characters without space (a URL). */
static bool token_valid(const char *s, size_t cap)
{
	size_t n = strlen(s);

	if (n < 1 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

/* Reads the integer member key of obj into *out (absent or null: 0). */
static bool take_integer(const json_t *obj, const char *key, int64_t *out)
{
	const json_t *v = json_object_get(obj, key);

	*out = 0;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v))
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

/* brand and last4 of a card object; both "" if card is not an object. */
static bool card_from(const json_t *card, char *brand, char *last4)
{
	brand[0] = last4[0] = '\0';
	if (!json_is_object(card))
		return true;
	if (!take_string(card, "brand", brand, PSPC_BRAND_MAX) ||
	    !take_string(card, "last4", last4, PSPC_LAST4_MAX))
		return false;
	return (brand[0] == '\0' || brand_valid(brand)) && (last4[0] == '\0' || last4_valid(last4));
}

/* A member that is an id string or an object with an id (an expanded
 * object, as Stripe's expand[] gives): the id into out. */
static bool take_id_or_object(const json_t *obj, const char *key, char *out, size_t cap)
{
	const json_t *v = json_object_get(obj, key);

	if (json_is_object(v))
		return take_string(v, "id", out, cap) && (out[0] == '\0' || id_valid(out));
	return take_string(obj, key, out, cap) && (out[0] == '\0' || id_valid(out));
}

static orn_rc intent_from(const json_t *o, pspc_intent *out)
{
	const json_t *meta, *error, *action, *redirect, *method, *details;

	memset(out, 0, sizeof *out);
	if (!json_is_object(o) || !take_string(o, "id", out->id, sizeof out->id) || !id_valid(out->id) ||
	    !take_string(o, "status", out->status, sizeof out->status) ||
	    !take_integer(o, "amount", &out->amount) ||
	    !take_integer(o, "amount_refunded", &out->amount_refunded) ||
	    !take_string(o, "currency", out->currency, sizeof out->currency) ||
	    !take_id_or_object(o, "payment_method", out->payment_method, sizeof out->payment_method) ||
	    !take_id_or_object(o, "latest_charge", out->latest_charge, sizeof out->latest_charge))
		return ORN_EDECODE;
	if ((meta = json_object_get(o, "metadata")) != NULL && json_is_object(meta) &&
	    !take_string(meta, "order_id", out->order_id, sizeof out->order_id))
		return ORN_EDECODE;
	if ((error = json_object_get(o, "last_payment_error")) != NULL && json_is_object(error) &&
	    (!take_string(error, "code", out->error_code, sizeof out->error_code) ||
	     !take_string(error, "decline_code", out->error_decline_code, sizeof out->error_decline_code)))
		return ORN_EDECODE;
	action = json_object_get(o, "next_action");
	redirect = json_is_object(action) ? json_object_get(action, "redirect_to_url") : NULL;
	if (json_is_object(redirect) &&
	    (!take_string(redirect, "url", out->action_url, sizeof out->action_url) ||
	     (out->action_url[0] != '\0' && !token_valid(out->action_url, sizeof out->action_url))))
		return ORN_EDECODE;
	method = json_object_get(o, "payment_method");
	details = json_object_get(o, "payment_method_details");
	if (!card_from(json_is_object(method) ? json_object_get(method, "card") : NULL, out->brand,
	               out->last4))
		return ORN_EDECODE;
	if (out->brand[0] == '\0' && json_is_object(details) &&
	    !card_from(json_object_get(details, "card"), out->brand, out->last4))
		return ORN_EDECODE;
	return ORN_OK;
}

static json_t *load(const char *json, size_t len)
{
	json_error_t err;

	if (json == NULL)
		return NULL;
	return json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
}

orn_rc pspc_parse_intent(const char *json, size_t len, pspc_intent *out)
{
	json_t *root = load(json, len);
	orn_rc rc = root != NULL ? intent_from(root, out) : ORN_EDECODE;

	json_decref(root);
	return rc;
}

orn_rc pspc_parse_error(const char *json, size_t len, pspc_error *out, pspc_intent *intent)
{
	json_t *root = load(json, len);
	const json_t *e = root != NULL ? json_object_get(root, "error") : NULL;
	const json_t *pi = json_is_object(e) ? json_object_get(e, "payment_intent") : NULL;
	orn_rc rc = ORN_EDECODE;

	memset(out, 0, sizeof *out);
	if (intent != NULL)
		memset(intent, 0, sizeof *intent);
	if (json_is_object(e) && take_string(e, "type", out->type, sizeof out->type) &&
	    take_string(e, "code", out->code, sizeof out->code) &&
	    take_string(e, "decline_code", out->decline_code, sizeof out->decline_code) &&
	    take_string(e, "param", out->param, sizeof out->param) && out->type[0] != '\0' &&
	    (intent == NULL || !json_is_object(pi) || intent_from(pi, intent) == ORN_OK))
		rc = ORN_OK;
	json_decref(root);
	if (rc != ORN_OK) {
		memset(out, 0, sizeof *out);
		if (intent != NULL)
			memset(intent, 0, sizeof *intent);
	}
	return rc;
}

orn_rc pspc_parse_refund(const char *json, size_t len, pspc_refund *out)
{
	json_t *root = load(json, len);
	orn_rc rc = ORN_EDECODE;

	memset(out, 0, sizeof *out);
	if (json_is_object(root) && take_string(root, "id", out->id, sizeof out->id) && id_valid(out->id) &&
	    take_id_or_object(root, "payment_intent", out->payment_intent, sizeof out->payment_intent) &&
	    take_id_or_object(root, "charge", out->charge, sizeof out->charge) &&
	    take_string(root, "status", out->status, sizeof out->status) && out->status[0] != '\0' &&
	    take_string(root, "failure_reason", out->failure_reason, sizeof out->failure_reason) &&
	    take_integer(root, "amount", &out->amount))
		rc = ORN_OK;
	json_decref(root);
	if (rc != ORN_OK)
		memset(out, 0, sizeof *out);
	return rc;
}

orn_rc pspc_parse_payment_method(const char *json, size_t len, pspc_card *out)
{
	json_t *root = load(json, len);
	orn_rc rc = ORN_EDECODE;

	memset(out, 0, sizeof *out);
	if (json_is_object(root) && card_from(json_object_get(root, "card"), out->brand, out->last4) &&
	    out->brand[0] != '\0' && out->last4[0] != '\0')
		rc = ORN_OK;
	json_decref(root);
	if (rc != ORN_OK)
		memset(out, 0, sizeof *out);
	return rc;
}

orn_rc pspc_parse_intent_list(const char *json, size_t len, pspc_intent *out, size_t cap, size_t *count)
{
	json_t *root = load(json, len);
	const json_t *data = root != NULL ? json_object_get(root, "data") : NULL;
	orn_rc rc = ORN_EDECODE;

	*count = 0;
	if (json_is_array(data)) {
		rc = ORN_OK;
		for (size_t i = 0; i < json_array_size(data) && *count < cap && rc == ORN_OK; i++)
			if ((rc = intent_from(json_array_get(data, i), &out[*count])) == ORN_OK)
				(*count)++;
	}
	json_decref(root);
	if (rc != ORN_OK)
		*count = 0;
	return rc;
}

/* The outcome a parsed intent's status says; PSPC_REFUSED for a status a
 * confirmed card intent should not stop in. */
static pspc_outcome outcome_of(const pspc_intent *intent)
{
	if (strcmp(intent->status, "succeeded") == 0)
		return PSPC_SUCCEEDED;
	if (strcmp(intent->status, "requires_action") == 0 && intent->action_url[0] != '\0')
		return PSPC_ACTION_REQUIRED;
	if (strcmp(intent->status, "requires_payment_method") == 0 || strcmp(intent->status, "canceled") == 0)
		return PSPC_DECLINED;
	if (strcmp(intent->status, "processing") == 0)
		return PSPC_RETRY;
	return PSPC_REFUSED;
}

pspc_outcome pspc_intent_outcome(long status, const char *body, size_t len, pspc_intent *intent,
                                 pspc_error *error)
{
	memset(intent, 0, sizeof *intent);
	memset(error, 0, sizeof *error);
	if (status == 200) {
		if (pspc_parse_intent(body, len, intent) != ORN_OK)
			return PSPC_REFUSED;
		return outcome_of(intent);
	}
	if (status == 402)
		return pspc_parse_error(body, len, error, intent) == ORN_OK &&
		                       strcmp(error->type, "card_error") == 0 && intent->id[0] != '\0'
		               ? PSPC_DECLINED
		               : PSPC_REFUSED;
	(void)pspc_parse_error(body, len, error, NULL);
	if (status == 409 || status == 429 || status >= 500)
		return PSPC_RETRY;
	return PSPC_REFUSED;
}

const char *pspc_decline_code(const pspc_intent *intent, const pspc_error *error)
{
	if (error != NULL && error->decline_code[0] != '\0')
		return error->decline_code;
	if (intent != NULL && intent->error_decline_code[0] != '\0')
		return intent->error_decline_code;
	if (error != NULL && error->code[0] != '\0')
		return error->code;
	if (intent != NULL && intent->error_code[0] != '\0')
		return intent->error_code;
	if (intent != NULL && strcmp(intent->status, "canceled") == 0)
		return "canceled";
	return "declined";
}

/* ---- I/O ---- */

orn_rc pspc_client_create(const char *base_url, const char *api_key, int64_t connect_timeout_ms,
                          pspc_client **out)
{
	pspc_client *c;
	size_t n;

	*out = NULL;
	if (base_url == NULL || base_url[0] == '\0' || api_key == NULL || api_key[0] == '\0' ||
	    strlen(base_url) > URL_MAX / 2 || strpbrk(api_key, "\r\n") != NULL)
		return ORN_EINVAL;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return ORN_ENOMEM;
	n = strlen("Authorization: Bearer ") + strlen(api_key) + 1;
	c->base_url = strdup(base_url);
	c->auth_header = malloc(n);
	c->curl = curl_easy_init();
	if (c->base_url == NULL || c->auth_header == NULL || c->curl == NULL) {
		pspc_client_destroy(c);
		return ORN_ENOMEM;
	}
	snprintf(c->auth_header, n, "Authorization: Bearer %s", api_key);
	c->connect_timeout_ms = connect_timeout_ms > 0 ? (long)connect_timeout_ms : 2000;
	*out = c;
	return ORN_OK;
}

void pspc_client_destroy(pspc_client *c)
{
	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	if (c->auth_header != NULL)
		sodium_memzero(c->auth_header, strlen(c->auth_header));
	free(c->auth_header);
	free(c->base_url);
	free(c);
}

void pspc_response_dispose(pspc_response *r)
{
	if (r->body != NULL)
		sodium_memzero(r->body, r->len);
	free(r->body);
	memset(r, 0, sizeof *r);
}

/* Grows the body as curl hands over data. */
static size_t on_body(char *data, size_t size, size_t count, void *closure)
{
	pspc_response *r = closure;
	size_t n = size * count;
	char *grown;

	if (r->len + n + 1 > BODY_MAX)
		return 0;
	if ((grown = malloc(r->len + n + 1)) == NULL)
		return 0;
	if (r->body != NULL) {
		memcpy(grown, r->body, r->len);
		sodium_memzero(r->body, r->len);
		free(r->body);
	}
	memcpy(grown + r->len, data, n);
	r->body = grown;
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static size_t on_header(char *data, size_t size, size_t count, void *closure)
{
	pspc_response *r = closure;
	size_t n = size * count, name = strlen(REPLAY_HDR);

	if (n > name && strncasecmp(data, REPLAY_HDR, name) == 0) {
		const char *v = data + name;
		while (*v == ' ' && v < data + n)
			v++;
		if ((size_t)(data + n - v) >= 4 && strncasecmp(v, "true", 4) == 0)
			r->replayed = true;
	}
	return n;
}

static orn_rc curl_rc(CURLcode code)
{
	switch (code) {
	case CURLE_OK:
		return ORN_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return ORN_EUNAVAILABLE;
	case CURLE_OPERATION_TIMEDOUT:
		return ORN_ETIMEOUT;
	case CURLE_OUT_OF_MEMORY:
		return ORN_ENOMEM;
	default:
		return ORN_EIO;
	}
}

/* Appends line to list; on failure frees the list and returns NULL. */
static struct curl_slist *append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *more = curl_slist_append(list, line);

	if (more == NULL)
		curl_slist_free_all(list);
	return more;
}

/* One request: GET when body is NULL, else a form POST. */
static orn_rc perform(pspc_client *c, const char *url, const char *body, size_t body_len,
                      const char *idem_key, int64_t timeout_ms, pspc_response *out)
{
	struct curl_slist *headers = NULL;
	char idem_header[HEADER_MAX];
	CURLcode code;
	orn_rc rc;

	memset(out, 0, sizeof *out);
	snprintf(idem_header, sizeof idem_header, "Idempotency-Key: %s", idem_key != NULL ? idem_key : "");
	headers = curl_slist_append(NULL, c->auth_header);
	if (headers != NULL && idem_key != NULL)
		headers = append_header(headers, idem_header);
	if (headers != NULL && body != NULL) /* no "Expect: 100-continue" round trip */
		headers = append_header(headers, "Expect:");
	if (headers == NULL)
		return ORN_ENOMEM;
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, out);
	if (body != NULL) {
		curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body); /* not copied */
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	code = curl_easy_perform(c->curl);
	if ((rc = curl_rc(code)) == ORN_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &out->status);
	/* forget the borrowed body before it is wiped and reused */
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
	curl_slist_free_all(headers);
	sodium_memzero(idem_header, sizeof idem_header);
	if (rc != ORN_OK)
		pspc_response_dispose(out);
	return rc;
}

orn_rc pspc_intent_post(pspc_client *c, const char *form, size_t form_len, const char *idem_key,
                        int64_t timeout_ms, pspc_response *out)
{
	char url[URL_MAX];

	memset(out, 0, sizeof *out);
	if (form == NULL || idem_key == NULL)
		return ORN_EINVAL;
	snprintf(url, sizeof url, "%s%s", c->base_url, INTENT_PATH);
	return perform(c, url, form, form_len, idem_key, timeout_ms, out);
}

orn_rc pspc_intents_of_order(pspc_client *c, const char *order_id, int64_t timeout_ms, pspc_response *out)
{
	char url[URL_MAX];

	memset(out, 0, sizeof *out);
	if (!orn_id_valid(order_id)) /* an id needs no escaping */
		return ORN_EINVAL;
	snprintf(url, sizeof url, "%s%s%s%s", c->base_url, INTENT_PATH, ORDER_FILTER, order_id);
	return perform(c, url, NULL, 0, NULL, timeout_ms, out);
}

orn_rc pspc_payment_method_get(pspc_client *c, const char *id, int64_t timeout_ms, pspc_response *out)
{
	char url[URL_MAX], escaped[PSPC_ID_MAX * 3 + 1];
	size_t at = 0;

	memset(out, 0, sizeof *out);
	if (!pspc_payment_method_valid(id) || !put_escaped(escaped, sizeof escaped, &at, id, false))
		return ORN_EINVAL;
	escaped[at] = '\0';
	snprintf(url, sizeof url, "%s%s%s", c->base_url, METHOD_PATH, escaped);
	return perform(c, url, NULL, 0, NULL, timeout_ms, out);
}

orn_rc pspc_refund_post(pspc_client *c, const char *intent_id, const char *idem_key, int64_t timeout_ms,
                        pspc_response *out)
{
	char url[URL_MAX], form[PSPC_ID_MAX * 3 + 32];
	size_t len = 0;
	orn_rc rc;

	memset(out, 0, sizeof *out);
	if (intent_id == NULL || idem_key == NULL)
		return ORN_EINVAL;
	if ((rc = pspc_form_add(form, sizeof form, &len, "payment_intent", intent_id)) != ORN_OK)
		return rc;
	snprintf(url, sizeof url, "%s%s", c->base_url, REFUND_PATH);
	return perform(c, url, form, len, idem_key, timeout_ms, out);
}
