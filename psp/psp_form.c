/* psp_form.c — form decoding, the idempotency digest and the card and
 * intent checks of the provider sandbox (see psp_form.h); Luhn and brands
 * are actors/card.h's. */
#include "psp_form.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card.h"

#define AMOUNT_MAX      10000000000LL
#define ORDER_MAX_BYTES 500

/* ---- decoding ------------------------------------------------------------ */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* Decodes len bytes into a new NUL-terminated string; NULL with *rc set. */
static char *decode(const char *s, size_t len, size_t *out_len, orn_rc *rc)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	if (out == NULL) {
		*rc = ORN_ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (len - i < 3)
				goto invalid;
			int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				goto invalid;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0')
			goto invalid;
		out[n++] = c;
	}
	out[n] = '\0';
	if (!utf8_valid((const unsigned char *)out, n))
		goto invalid;
	*out_len = n;
	return out;
invalid:
	sodium_memzero(out, len + 1);
	free(out);
	*rc = ORN_EINVAL;
	return NULL;
}

static void param_wipe(psp_param *p)
{
	if (p->key != NULL) {
		sodium_memzero(p->key, p->key_len);
		free(p->key);
	}
	if (p->value != NULL) {
		sodium_memzero(p->value, p->value_len);
		free(p->value);
	}
	memset(p, 0, sizeof *p);
}

void psp_form_dispose(psp_form *f)
{
	for (size_t i = 0; i < f->count; i++)
		param_wipe(&f->items[i]);
	f->count = 0;
}

orn_rc psp_form_parse(const char *text, size_t len, psp_form *f, char *bad, size_t bad_cap)
{
	orn_rc rc = ORN_OK;
	memset(f, 0, sizeof *f);
	if (bad_cap > 0)
		bad[0] = '\0';
	size_t start = 0;
	while (start <= len) {
		const char *seg = text + start;
		const char *amp = memchr(seg, '&', len - start);
		size_t seg_len = amp != NULL ? (size_t)(amp - seg) : len - start;
		start += seg_len + 1;
		if (seg_len == 0)
			continue;
		const char *eq = memchr(seg, '=', seg_len);
		size_t key_raw = eq != NULL ? (size_t)(eq - seg) : seg_len;
		if (key_raw == 0) {
			rc = ORN_EINVAL;
			goto fail;
		}
		if (f->count == PSP_FORM_MAX_PARAMS) {
			rc = ORN_ETOOBIG;
			goto fail;
		}
		psp_param *p = &f->items[f->count];
		p->key = decode(seg, key_raw, &p->key_len, &rc);
		if (p->key == NULL)
			goto fail;
		f->count++;
		if (eq != NULL)
			p->value = decode(eq + 1, seg_len - key_raw - 1, &p->value_len, &rc);
		else
			p->value = decode("", 0, &p->value_len, &rc);
		if (p->value == NULL)
			goto fail;
		for (size_t i = 0; i + 1 < f->count; i++) {
			if (strcmp(f->items[i].key, p->key) == 0) {
				if (bad_cap > 0)
					snprintf(bad, bad_cap, "%s", p->key);
				rc = ORN_EEXISTS;
				goto fail;
			}
		}
	}
	return ORN_OK;
fail:
	psp_form_dispose(f);
	return rc;
}

const char *psp_form_get(const psp_form *f, const char *key)
{
	for (size_t i = 0; i < f->count; i++)
		if (strcmp(f->items[i].key, key) == 0)
			return f->items[i].value;
	return NULL;
}

const char *psp_form_unknown(const psp_form *f, const char *const *allowed)
{
	for (size_t i = 0; i < f->count; i++) {
		bool known = false;
		for (const char *const *a = allowed; *a != NULL && !known; a++)
			known = strcmp(*a, f->items[i].key) == 0;
		if (!known)
			return f->items[i].key;
	}
	return NULL;
}

/* ---- the digest ---------------------------------------------------------- */

static void digest_part(crypto_hash_sha256_state *st, const char *data, size_t len)
{
	uint8_t prefix[8];
	uint64_t n = len;
	for (int i = 7; i >= 0; i--) {
		prefix[i] = (uint8_t)(n & 0xff);
		n >>= 8;
	}
	crypto_hash_sha256_update(st, prefix, sizeof prefix);
	crypto_hash_sha256_update(st, (const uint8_t *)data, len);
}

static int param_compare(const void *a, const void *b)
{
	const psp_param *const *x = a, *const *y = b;
	return strcmp((*x)->key, (*y)->key);
}

void psp_form_digest(const psp_form *f, const char *secret, const char *scope, uint8_t out[PSP_DIGEST_BYTES])
{
	const psp_param *sorted[PSP_FORM_MAX_PARAMS];
	crypto_hash_sha256_state st;
	for (size_t i = 0; i < f->count; i++)
		sorted[i] = &f->items[i];
	if (f->count > 1)
		qsort(sorted, f->count, sizeof sorted[0], param_compare);
	crypto_hash_sha256_init(&st);
	digest_part(&st, "orion-psp-idempotency-v1", 24);
	digest_part(&st, secret, strlen(secret));
	digest_part(&st, scope, strlen(scope));
	for (size_t i = 0; i < f->count; i++) {
		digest_part(&st, sorted[i]->key, sorted[i]->key_len);
		digest_part(&st, sorted[i]->value, sorted[i]->value_len);
	}
	crypto_hash_sha256_final(&st, out);
	sodium_memzero(&st, sizeof st);
}

bool psp_idempotency_key_valid(const char *key)
{
	size_t n = 0;
	if (key == NULL)
		return false;
	for (; key[n] != '\0'; n++)
		if ((unsigned char)key[n] < 0x20 || (unsigned char)key[n] > 0x7e)
			return false;
	return n >= 1 && n <= PSP_IDEMPOTENCY_MAX;
}

/* ---- parameter checks ---------------------------------------------------- */

static bool all_digits(const char *s, size_t min, size_t max)
{
	size_t n = 0;
	for (; s[n] != '\0'; n++)
		if (s[n] < '0' || s[n] > '9')
			return false;
	return n >= min && n <= max;
}

static orn_rc param_error(psp_param_error *err, const char *code, const char *param, const char *message)
{
	err->status = 400;
	err->code = code;
	snprintf(err->param, sizeof err->param, "%s", param);
	snprintf(err->message, sizeof err->message, "%s", message);
	return ORN_EINVAL;
}

/* Digits only, at most 18 of them (leading zeros allowed); false otherwise. */
static bool parse_uint(const char *s, int64_t *out)
{
	int64_t v = 0;
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 18)
			return false;
		v = v * 10 + (s[n] - '0');
	}
	*out = v;
	return n > 0;
}

static bool text_ok(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);
	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* ---- payment methods and intents ----------------------------------------- */

#define RETURN_URL_MAX 2000

static const char *const behaviour_names[] = {
        [PSP_BEHAVIOUR_APPROVE] = "approve",
        [PSP_BEHAVIOUR_DECLINE_GENERIC] = "decline_generic",
        [PSP_BEHAVIOUR_DECLINE_FUNDS] = "decline_funds",
        [PSP_BEHAVIOUR_EXPIRED_CARD] = "expired_card",
        [PSP_BEHAVIOUR_INCORRECT_CVC] = "incorrect_cvc",
        [PSP_BEHAVIOUR_REQUIRES_3DS] = "requires_3ds",
        [PSP_BEHAVIOUR_SILENT] = "silent",
        [PSP_BEHAVIOUR_REFUND_FAILS_FIRST] = "refund_fails_first",
};

const char *psp_behaviour_name(psp_behaviour b)
{
	return (size_t)b < ORN_ARRAY_LEN(behaviour_names) ? behaviour_names[b] : "approve";
}

bool psp_behaviour_parse(const char *name, psp_behaviour *out)
{
	for (size_t i = 0; i < ORN_ARRAY_LEN(behaviour_names); i++) {
		if (strcmp(behaviour_names[i], name) == 0) {
			*out = (psp_behaviour)i;
			return true;
		}
	}
	return false;
}

const char *psp_behaviour_code(psp_behaviour b)
{
	switch (b) {
	case PSP_BEHAVIOUR_DECLINE_GENERIC:
	case PSP_BEHAVIOUR_DECLINE_FUNDS:
		return "card_declined";
	case PSP_BEHAVIOUR_EXPIRED_CARD:
		return "expired_card";
	case PSP_BEHAVIOUR_INCORRECT_CVC:
		return "incorrect_cvc";
	default:
		return NULL;
	}
}

const char *psp_behaviour_decline_code(psp_behaviour b)
{
	switch (b) {
	case PSP_BEHAVIOUR_DECLINE_GENERIC:
		return "generic_decline";
	case PSP_BEHAVIOUR_DECLINE_FUNDS:
		return "insufficient_funds";
	default:
		return psp_behaviour_code(b);
	}
}

const char *psp_behaviour_message(psp_behaviour b)
{
	switch (b) {
	case PSP_BEHAVIOUR_DECLINE_FUNDS:
		return "Your card has insufficient funds.";
	case PSP_BEHAVIOUR_EXPIRED_CARD:
		return "Your card has expired.";
	case PSP_BEHAVIOUR_INCORRECT_CVC:
		return "Your card's security code is incorrect.";
	default:
		return "Your card was declined.";
	}
}

static psp_behaviour card_behaviour(const char *number)
{
	static const struct {
		const char *number;
		psp_behaviour behaviour;
	} table[] = {
	        {"4000000000000002", PSP_BEHAVIOUR_DECLINE_GENERIC},
	        {"4000000000009995", PSP_BEHAVIOUR_DECLINE_FUNDS},
	        {"4000000000000069", PSP_BEHAVIOUR_EXPIRED_CARD},
	        {"4000000000000127", PSP_BEHAVIOUR_INCORRECT_CVC},
	        {"4000002500003155", PSP_BEHAVIOUR_REQUIRES_3DS},
	        {"4000000000000309", PSP_BEHAVIOUR_SILENT},
	        {"4000000000005126", PSP_BEHAVIOUR_REFUND_FAILS_FIRST},
	};
	for (size_t i = 0; i < ORN_ARRAY_LEN(table); i++)
		if (strcmp(table[i].number, number) == 0)
			return table[i].behaviour;
	return PSP_BEHAVIOUR_APPROVE;
}

static orn_rc card_refusal(psp_param_error *err, const char *code, const char *param, const char *message)
{
	param_error(err, code, param, message);
	err->status = 402;
	return ORN_EINVAL;
}

/* The form's parameters: each one of allowed (NULL-terminated), each of
 * required present. ORN_OK, or ORN_EINVAL with err naming the first unknown or
 * missing one, as the provider words it. */
static orn_rc params_check(const psp_form *f, const char *const *allowed, const char *const *required,
                           psp_param_error *err)
{
	char message[160];
	const char *unknown = psp_form_unknown(f, allowed);

	if (unknown != NULL) {
		snprintf(message, sizeof message, "Received unknown parameter: %.100s", unknown);
		return param_error(err, "parameter_unknown", unknown, message);
	}
	for (const char *const *r = required; *r != NULL; r++) {
		if (psp_form_get(f, *r) == NULL) {
			snprintf(message, sizeof message, "Missing required param: %s.", *r);
			return param_error(err, "parameter_missing", *r, message);
		}
	}
	return ORN_OK;
}

orn_rc psp_card_check(const psp_form *f, int now_year, int now_month, psp_card *out, psp_param_error *err)
{
	static const char *const allowed[] = {"type",           "card[number]", "card[exp_month]",
	                                      "card[exp_year]", "card[cvc]",    NULL};
	int64_t v;
	memset(out, 0, sizeof *out);
	if (params_check(f, allowed, allowed, err) != ORN_OK)
		return ORN_EINVAL;
	const char *number = psp_form_get(f, "card[number]"), *cvc = psp_form_get(f, "card[cvc]");
	const char *month = psp_form_get(f, "card[exp_month]"), *year = psp_form_get(f, "card[exp_year]");
	if (strcmp(psp_form_get(f, "type"), "card") != 0)
		return param_error(err, "parameter_invalid", "type", "Invalid type: only card is supported.");
	size_t digits = strlen(number);
	if (!all_digits(number, 12, 19) || !card_luhn_valid(number, digits))
		return card_refusal(err, "incorrect_number", "card[number]",
		                    "Your card number is incorrect.");
	if (!parse_uint(month, &v) || strlen(month) > 2 || v < 1 || v > 12)
		return card_refusal(err, "invalid_expiry_month", "card[exp_month]",
		                    "Your card's expiration month is invalid.");
	out->exp_month = (int)v;
	if (!parse_uint(year, &v) || (strlen(year) != 2 && strlen(year) != 4))
		return card_refusal(err, "invalid_expiry_year", "card[exp_year]",
		                    "Your card's expiration year is invalid.");
	out->exp_year = strlen(year) == 2 ? 2000 + (int)v : (int)v;
	if (out->exp_year < now_year)
		return card_refusal(err, "invalid_expiry_year", "card[exp_year]",
		                    "Your card's expiration year is in the past.");
	if (out->exp_year == now_year && out->exp_month < now_month)
		return card_refusal(err, "invalid_expiry_month", "card[exp_month]",
		                    "Your card's expiration month is in the past.");
	if (!all_digits(cvc, 3, 4))
		return card_refusal(err, "invalid_cvc", "card[cvc]", "Your card's security code is invalid.");
	snprintf(out->brand, sizeof out->brand, "%s", card_brand(number, digits));
	memcpy(out->last4, number + digits - 4, 4);
	out->last4[4] = '\0';
	out->behaviour = card_behaviour(number);
	return ORN_OK;
}

static bool url_ok(const char *url)
{
	size_t n = strlen(url);
	if (n > RETURN_URL_MAX || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
			return false;
	return url[url[4] == 's' ? 8 : 7] != '\0';
}

orn_rc psp_intent_check(const psp_form *f, psp_intent_request *out, psp_param_error *err)
{
	static const char *const allowed[] = {
	        "amount", "currency", "payment_method", "confirm", "metadata[order_id]", "return_url", NULL};
	static const char *const required[] = {"amount", "currency", "payment_method", NULL};
	int64_t v;
	memset(out, 0, sizeof *out);
	if (params_check(f, allowed, required, err) != ORN_OK)
		return ORN_EINVAL;
	const char *amount = psp_form_get(f, "amount"), *currency = psp_form_get(f, "currency");
	const char *confirm = psp_form_get(f, "confirm"), *order_id = psp_form_get(f, "metadata[order_id]");
	out->payment_method = psp_form_get(f, "payment_method");
	out->return_url = psp_form_get(f, "return_url");
	if (!parse_uint(amount, &v) || v < 1 || v > AMOUNT_MAX)
		return param_error(err, "parameter_invalid", "amount",
		                   "Invalid amount: an integer of minor units from 1 to 10000000000.");
	out->amount = v;
	if (strlen(currency) != 3)
		return param_error(err, "parameter_invalid", "currency", "Invalid currency: three letters.");
	for (int i = 0; i < 3; i++) {
		char c = currency[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c < 'a' || c > 'z')
			return param_error(err, "parameter_invalid", "currency",
			                   "Invalid currency: three letters.");
		out->currency[i] = c;
	}
	if (!text_ok(out->payment_method, 1, 64))
		return param_error(err, "parameter_invalid", "payment_method",
		                   "Invalid payment_method: a pm_ id.");
	if (confirm != NULL && strcmp(confirm, "true") != 0)
		return param_error(err, "parameter_invalid", "confirm",
		                   "This provider confirms at creation: confirm must be true.");
	if (order_id != NULL && !text_ok(order_id, 1, ORDER_MAX_BYTES))
		return param_error(err, "parameter_invalid", "metadata[order_id]",
		                   "Invalid metadata value: 1 to 500 bytes of text.");
	out->order_id = order_id;
	if (out->return_url != NULL && !url_ok(out->return_url))
		return param_error(err, "parameter_invalid", "return_url",
		                   "Invalid return_url: an absolute http(s) URL of at most 2000 bytes.");
	return ORN_OK;
}
