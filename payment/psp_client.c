/* pspc_client.c — the provider's HTTP API, client side (see pspc_client.h).
 *
 * Parsing uses jansson on bodies that never hold a card (the provider keeps
 * brand and last 4 only); the request body that does hold one is the
 * caller's buffer, handed to curl without a copy (CURLOPT_POSTFIELDS). */
#include "psp_client.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define BODY_MAX     (1u << 20) /* a list of an order's charges is far smaller */
#define URL_MAX      1024
#define HEADER_MAX   (PSPC_KEY_MAX + 64)
#define CHARGE_PATH  "/v1/charges"
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
	sodium_memzero(buf + *len, cap - *len); /* a partial value may be a card's */
	return ORN_ETOOBIG;
}

orn_rc pspc_charge_form(const pspc_charge_request *r, char *buf, size_t cap, size_t *len)
{
	char amount[24], month[8], year[8];
	orn_rc rc;

	*len = 0;
	if (cap > 0)
		buf[0] = '\0';
	if (r->currency == NULL || r->card_number == NULL || r->cvc == NULL || r->holder_name == NULL ||
	    r->order_id == NULL || r->amount < 1 || r->amount > PSPC_AMOUNT_MAX || r->exp_month < 0 ||
	    r->exp_month > 99 || r->exp_year < 0 || r->exp_year > 9999)
		return ORN_EINVAL;
	snprintf(amount, sizeof amount, "%lld", (long long)r->amount);
	snprintf(month, sizeof month, "%d", r->exp_month);
	snprintf(year, sizeof year, "%d", r->exp_year);
	if ((rc = pspc_form_add(buf, cap, len, "amount", amount)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "currency", r->currency)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "card[number]", r->card_number)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "card[exp_month]", month)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "card[exp_year]", year)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "card[cvc]", r->cvc)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "card[name]", r->holder_name)) != ORN_OK ||
	    (rc = pspc_form_add(buf, cap, len, "metadata[order_id]", r->order_id)) != ORN_OK) {
		sodium_memzero(buf, cap);
		*len = 0;
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

static bool take_bool(const json_t *obj, const char *key, bool *out)
{
	const json_t *v = json_object_get(obj, key);

	*out = false;
	if (v == NULL)
		return true;
	if (!json_is_boolean(v))
		return false;
	*out = json_is_true(v);
	return true;
}

static orn_rc charge_from(const json_t *o, pspc_charge *out)
{
	const json_t *amount, *meta, *details, *card;

	memset(out, 0, sizeof *out);
	if (!json_is_object(o) || !take_string(o, "id", out->id, sizeof out->id) || !id_valid(out->id) ||
	    !take_string(o, "status", out->status, sizeof out->status) || !take_bool(o, "paid", &out->paid) ||
	    !take_bool(o, "refunded", &out->refunded) ||
	    !take_string(o, "currency", out->currency, sizeof out->currency))
		return ORN_EDECODE;
	if ((amount = json_object_get(o, "amount")) != NULL) {
		if (!json_is_integer(amount))
			return ORN_EDECODE;
		out->amount = (int64_t)json_integer_value(amount);
	}
	if ((meta = json_object_get(o, "metadata")) != NULL && json_is_object(meta) &&
	    !take_string(meta, "order_id", out->order_id, sizeof out->order_id))
		return ORN_EDECODE;
	details = json_object_get(o, "payment_method_details");
	card = json_is_object(details) ? json_object_get(details, "card") : NULL;
	if (json_is_object(card)) {
		if (!take_string(card, "brand", out->brand, sizeof out->brand) ||
		    !take_string(card, "last4", out->last4, sizeof out->last4))
			return ORN_EDECODE;
		if ((out->brand[0] != '\0' && !brand_valid(out->brand)) ||
		    (out->last4[0] != '\0' && !last4_valid(out->last4)))
			return ORN_EDECODE;
	}
	return ORN_OK;
}

static json_t *load(const char *json, size_t len)
{
	json_error_t err;

	if (json == NULL)
		return NULL;
	return json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
}

orn_rc pspc_parse_charge(const char *json, size_t len, pspc_charge *out)
{
	json_t *root = load(json, len);
	orn_rc rc = root != NULL ? charge_from(root, out) : ORN_EDECODE;

	json_decref(root);
	return rc;
}

orn_rc pspc_parse_error(const char *json, size_t len, pspc_error *out)
{
	json_t *root = load(json, len);
	const json_t *e = root != NULL ? json_object_get(root, "error") : NULL;
	orn_rc rc = ORN_EDECODE;

	memset(out, 0, sizeof *out);
	if (json_is_object(e) && take_string(e, "type", out->type, sizeof out->type) &&
	    take_string(e, "code", out->code, sizeof out->code) &&
	    take_string(e, "decline_code", out->decline_code, sizeof out->decline_code) &&
	    take_string(e, "param", out->param, sizeof out->param) &&
	    take_string(e, "charge", out->charge, sizeof out->charge) && out->type[0] != '\0' &&
	    (out->charge[0] == '\0' || id_valid(out->charge)))
		rc = ORN_OK;
	json_decref(root);
	if (rc != ORN_OK)
		memset(out, 0, sizeof *out);
	return rc;
}

orn_rc pspc_parse_refund(const char *json, size_t len, pspc_refund *out)
{
	json_t *root = load(json, len);
	orn_rc rc = ORN_EDECODE;

	memset(out, 0, sizeof *out);
	if (json_is_object(root) && take_string(root, "id", out->id, sizeof out->id) && id_valid(out->id) &&
	    take_string(root, "charge", out->charge, sizeof out->charge) &&
	    take_string(root, "status", out->status, sizeof out->status))
		rc = ORN_OK;
	json_decref(root);
	return rc;
}

orn_rc pspc_parse_charge_list(const char *json, size_t len, pspc_charge *out, size_t cap, size_t *count)
{
	json_t *root = load(json, len);
	const json_t *data = root != NULL ? json_object_get(root, "data") : NULL;
	orn_rc rc = ORN_EDECODE;

	*count = 0;
	if (json_is_array(data)) {
		rc = ORN_OK;
		for (size_t i = 0; i < json_array_size(data) && *count < cap && rc == ORN_OK; i++)
			if ((rc = charge_from(json_array_get(data, i), &out[*count])) == ORN_OK)
				(*count)++;
	}
	json_decref(root);
	if (rc != ORN_OK)
		*count = 0;
	return rc;
}

pspc_outcome pspc_charge_outcome(long status, const char *body, size_t len, pspc_charge *charge,
                                 pspc_error *error)
{
	memset(charge, 0, sizeof *charge);
	memset(error, 0, sizeof *error);
	if (status == 200)
		return pspc_parse_charge(body, len, charge) == ORN_OK &&
		                       strcmp(charge->status, "succeeded") == 0 && charge->paid
		               ? PSPC_APPROVED
		               : PSPC_REFUSED;
	if (status == 402)
		return pspc_parse_error(body, len, error) == ORN_OK &&
		                       strcmp(error->type, "card_error") == 0 && error->code[0] != '\0'
		               ? PSPC_DECLINED
		               : PSPC_REFUSED;
	if (status == 409 || status == 429 || status >= 500) {
		(void)pspc_parse_error(body, len, error);
		return PSPC_RETRY;
	}
	(void)pspc_parse_error(body, len, error);
	return PSPC_REFUSED;
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

orn_rc pspc_charge_post(pspc_client *c, const char *form, size_t form_len, const char *idem_key,
                        int64_t timeout_ms, pspc_response *out)
{
	char url[URL_MAX];

	memset(out, 0, sizeof *out);
	if (form == NULL || idem_key == NULL)
		return ORN_EINVAL;
	snprintf(url, sizeof url, "%s%s", c->base_url, CHARGE_PATH);
	return perform(c, url, form, form_len, idem_key, timeout_ms, out);
}

orn_rc pspc_charges_of_order(pspc_client *c, const char *order_id, int64_t timeout_ms, pspc_response *out)
{
	char url[URL_MAX];

	memset(out, 0, sizeof *out);
	if (!orn_id_valid(order_id)) /* an id needs no escaping */
		return ORN_EINVAL;
	snprintf(url, sizeof url, "%s%s%s%s", c->base_url, CHARGE_PATH, ORDER_FILTER, order_id);
	return perform(c, url, NULL, 0, NULL, timeout_ms, out);
}

orn_rc pspc_refund_post(pspc_client *c, const char *charge_id, const char *idem_key, int64_t timeout_ms,
                        pspc_response *out)
{
	char url[URL_MAX], form[PSPC_ID_MAX * 3 + 16];
	size_t len = 0;
	orn_rc rc;

	memset(out, 0, sizeof *out);
	if (charge_id == NULL || idem_key == NULL)
		return ORN_EINVAL;
	if ((rc = pspc_form_add(form, sizeof form, &len, "charge", charge_id)) != ORN_OK)
		return rc;
	snprintf(url, sizeof url, "%s%s", c->base_url, REFUND_PATH);
	return perform(c, url, form, len, idem_key, timeout_ms, out);
}
