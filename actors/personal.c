/* personal.c — sealed personal fields, the blind index and key wrapping
 * (personal.h; docs/adr/027-personal-data.md). libsodium's
 * XChaCha20-Poly1305 (IETF): 24-byte random nonces, so a key may seal any
 * number of values without a nonce counter. */
#include "personal.h"

#include <string.h>

#include <sodium.h>

#define NONCE_BYTES  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES    crypto_aead_xchacha20poly1305_ietf_ABYTES
#define AD_DOMAIN    "orion.pd.v1"
#define WRAP_DOMAIN  "orion.keys.v1"
#define INDEX_DOMAIN "orion.user.email"
#define AD_MAX       (sizeof AD_DOMAIN + PD_KID_MAX + 64 + PD_EVENT_MAX)
#define SEALED_MAX   (NONCE_BYTES + PD_PLAIN_MAX + TAG_BYTES)
#define B64          sodium_base64_VARIANT_URLSAFE_NO_PADDING

_Static_assert(PD_WRAPPED_BYTES == NONCE_BYTES + PD_KEY_BYTES + TAG_BYTES, "wrapped key layout");

void pd_key_new(char kid[PD_KID_MAX], uint8_t key[PD_KEY_BYTES])
{
	uint8_t id[PD_KID_LEN / 2];
	randombytes_buf(id, sizeof id);
	sodium_bin2hex(kid, PD_KID_MAX, id, sizeof id);
	crypto_aead_xchacha20poly1305_ietf_keygen(key);
}

bool pd_kid_valid(const char *kid)
{
	size_t len = strnlen(kid, PD_KID_MAX);
	bool valid = len == PD_KID_LEN;
	for (size_t i = 0; valid && i < len; i++)
		valid = (kid[i] >= '0' && kid[i] <= '9') || (kid[i] >= 'a' && kid[i] <= 'f');
	return valid;
}

static bool field_valid(const char *field)
{
	size_t len = strnlen(field, 64);
	return len > 0 && len < 64 && strspn(field, "abcdefghijklmnopqrstuvwxyz_") == len;
}

static bool event_valid(const char *event_id)
{
	size_t len = strnlen(event_id, PD_EVENT_MAX);
	return len > 0 && len < PD_EVENT_MAX;
}

/* "orion.pd.v1" NUL kid NUL field NUL event id: each part NUL-ended, so no
 * two different triples give the same bytes. */
static size_t associated_data(uint8_t ad[AD_MAX], const char *kid, const char *field, const char *event_id)
{
	size_t n = 0;
	const char *parts[] = {AD_DOMAIN, kid, field, event_id};
	for (size_t i = 0; i < ORN_ARRAY_LEN(parts); i++) {
		size_t len = strlen(parts[i]) + 1;
		memcpy(ad + n, parts[i], len);
		n += len;
	}
	return n;
}

orn_rc pd_seal(const uint8_t key[PD_KEY_BYTES], const char *kid, const char *field, const char *event_id,
               const char *plain, size_t len, char *out, size_t cap)
{
	uint8_t ad[AD_MAX], sealed[SEALED_MAX];
	unsigned long long sealed_len = 0;
	size_t event_len = 0, need;
	if (cap > 0)
		out[0] = '\0';
	if (!pd_kid_valid(kid) || !field_valid(field) || !event_valid(event_id) || len > PD_PLAIN_MAX)
		return ORN_EINVAL;
	event_len = strlen(event_id);
	need = strlen(PD_TOKEN_PREFIX) + PD_KID_LEN + 1 + sodium_base64_ENCODED_LEN(event_len, B64) + 1 +
	       sodium_base64_ENCODED_LEN(NONCE_BYTES + len + TAG_BYTES, B64);
	if (cap < need)
		return ORN_ETOOBIG;
	size_t ad_len = associated_data(ad, kid, field, event_id);
	randombytes_buf(sealed, NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + NONCE_BYTES, &sealed_len, (const uint8_t *)plain,
	                                           len, ad, ad_len, NULL, sealed, key);
	size_t n = (size_t)snprintf(out, cap, "%s%s.", PD_TOKEN_PREFIX, kid);
	sodium_bin2base64(out + n, cap - n, (const uint8_t *)event_id, event_len, B64);
	n += strlen(out + n);
	out[n++] = '.';
	sodium_bin2base64(out + n, cap - n, sealed, NONCE_BYTES + (size_t)sealed_len, B64);
	return ORN_OK;
}

/* The parts of a token: kid, event id (base64) and ciphertext (base64). */
typedef struct token_parts {
	char kid[PD_KID_MAX];
	const char *event_b64, *sealed_b64;
	size_t event_b64_len, sealed_b64_len;
} token_parts;

static bool is_b64(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return false;
	return true;
}

static bool split(const char *token, token_parts *p)
{
	size_t prefix = strlen(PD_TOKEN_PREFIX), len = strnlen(token, PD_TOKEN_MAX);
	if (len >= PD_TOKEN_MAX || len < prefix + PD_KID_LEN + 4 ||
	    strncmp(token, PD_TOKEN_PREFIX, prefix) != 0 || token[prefix + PD_KID_LEN] != '.')
		return false;
	memcpy(p->kid, token + prefix, PD_KID_LEN);
	p->kid[PD_KID_LEN] = '\0';
	p->event_b64 = token + prefix + PD_KID_LEN + 1;
	const char *dot = strchr(p->event_b64, '.');
	if (!pd_kid_valid(p->kid) || dot == NULL)
		return false;
	p->event_b64_len = (size_t)(dot - p->event_b64);
	p->sealed_b64 = dot + 1;
	p->sealed_b64_len = strlen(p->sealed_b64);
	return p->event_b64_len > 0 && p->event_b64_len <= sodium_base64_ENCODED_LEN(PD_EVENT_MAX - 1, B64) &&
	       is_b64(p->event_b64, p->event_b64_len) && is_b64(p->sealed_b64, p->sealed_b64_len) &&
	       p->sealed_b64_len >= sodium_base64_ENCODED_LEN(NONCE_BYTES + TAG_BYTES, B64) - 1 &&
	       p->sealed_b64_len <= sodium_base64_ENCODED_LEN(SEALED_MAX, B64);
}

/* Decodes the event id of p into out (PD_EVENT_MAX bytes). */
static bool decode_event(const token_parts *p, char out[PD_EVENT_MAX])
{
	size_t len = 0;
	if (sodium_base642bin((uint8_t *)out, PD_EVENT_MAX - 1, p->event_b64, p->event_b64_len, NULL, &len,
	                      NULL, B64) != 0 ||
	    len == 0 || memchr(out, '\0', len) != NULL)
		return false;
	out[len] = '\0';
	return true;
}

bool pd_is_sealed(const char *token)
{
	token_parts p;
	char event[PD_EVENT_MAX];
	return split(token, &p) && decode_event(&p, event);
}

orn_rc pd_token_kid(const char *token, char kid[PD_KID_MAX])
{
	token_parts p;
	kid[0] = '\0';
	if (!pd_is_sealed(token) || !split(token, &p))
		return ORN_EINVAL;
	memcpy(kid, p.kid, PD_KID_MAX);
	return ORN_OK;
}

orn_rc pd_token_event(const char *token, char event_id[PD_EVENT_MAX])
{
	token_parts p;
	event_id[0] = '\0';
	if (!split(token, &p) || !decode_event(&p, event_id)) {
		event_id[0] = '\0';
		return ORN_EINVAL;
	}
	return ORN_OK;
}

orn_rc pd_open(const uint8_t key[PD_KEY_BYTES], const char *token, const char *field,
               const char *expect_event, char *out, size_t cap)
{
	token_parts p;
	char event[PD_EVENT_MAX];
	uint8_t ad[AD_MAX], sealed[SEALED_MAX], plain[PD_PLAIN_MAX];
	size_t sealed_len = 0;
	unsigned long long plain_len = 0;
	orn_rc rc = ORN_EINVAL;
	if (cap > 0)
		out[0] = '\0';
	if (!field_valid(field) || !split(token, &p) || !decode_event(&p, event) ||
	    (expect_event != NULL && strcmp(event, expect_event) != 0))
		goto fail;
	rc = ORN_EDECODE;
	if (sodium_base642bin(sealed, sizeof sealed, p.sealed_b64, p.sealed_b64_len, NULL, &sealed_len, NULL,
	                      B64) != 0 ||
	    sealed_len < NONCE_BYTES + TAG_BYTES)
		goto fail;
	size_t ad_len = associated_data(ad, p.kid, field, event);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plain_len, NULL, sealed + NONCE_BYTES,
	                                               sealed_len - NONCE_BYTES, ad, ad_len, sealed,
	                                               key) != 0)
		goto fail;
	rc = ORN_ETOOBIG;
	if ((size_t)plain_len >= cap)
		goto fail;
	memcpy(out, plain, (size_t)plain_len);
	out[plain_len] = '\0';
	rc = ORN_OK;
fail:
	sodium_memzero(plain, sizeof plain);
	return rc;
}

void pd_blind_index(const uint8_t index_key[PD_KEY_BYTES], const char *email, char out[PD_INDEX_MAX])
{
	crypto_generichash_state state;
	uint8_t hash[16];
	crypto_generichash_init(&state, index_key, PD_KEY_BYTES, sizeof hash);
	crypto_generichash_update(&state, (const uint8_t *)INDEX_DOMAIN, sizeof INDEX_DOMAIN);
	crypto_generichash_update(&state, (const uint8_t *)email, strlen(email));
	crypto_generichash_final(&state, hash, sizeof hash);
	out[0] = 'u';
	sodium_bin2hex(out + 1, PD_INDEX_MAX - 1, hash, sizeof hash);
}

/* ---- emailed links ---- */

#define LINK_DOMAIN     "orion.link.v1"
#define LINK_KDF_CTX    "ornlinks" /* crypto_kdf_CONTEXTBYTES: 8 */
#define LINK_KDF_SUBKEY 1

void pd_link_key(const uint8_t index_key[PD_KEY_BYTES], uint8_t out[PD_KEY_BYTES])
{
	crypto_kdf_derive_from_key(out, PD_KEY_BYTES, LINK_KDF_SUBKEY, LINK_KDF_CTX, index_key);
}

orn_rc pd_link_token(const uint8_t link_key[PD_KEY_BYTES], const char *purpose, const char *account,
                     const char *request_id, char out[PD_LINK_MAX])
{
	crypto_generichash_state state;
	uint8_t mac[32];
	size_t n = strnlen(account, 65);
	out[0] = '\0';
	if (purpose == NULL || purpose[0] == '\0' || n > 64 || !orn_id_valid(account) ||
	    !orn_id_valid(request_id))
		return ORN_EINVAL;
	crypto_generichash_init(&state, link_key, PD_KEY_BYTES, sizeof mac);
	crypto_generichash_update(&state, (const uint8_t *)LINK_DOMAIN, sizeof LINK_DOMAIN);
	crypto_generichash_update(&state, (const uint8_t *)purpose, strlen(purpose) + 1);
	crypto_generichash_update(&state, (const uint8_t *)account, n + 1);
	crypto_generichash_update(&state, (const uint8_t *)request_id, strlen(request_id) + 1);
	crypto_generichash_final(&state, mac, sizeof mac);
	memcpy(out, account, n);
	out[n] = '.';
	sodium_bin2base64(out + n + 1, PD_LINK_MAX - n - 1, mac, sizeof mac, B64);
	sodium_memzero(mac, sizeof mac);
	return ORN_OK;
}

bool pd_link_account(const char *token, char *account, size_t cap)
{
	size_t len = strnlen(token, PD_LINK_MAX);
	const char *dot = memchr(token, '.', len);
	size_t n = dot != NULL ? (size_t)(dot - token) : 0;
	if (cap > 0)
		account[0] = '\0';
	if (dot == NULL || n == 0 || n > 64 || n >= cap || len != n + 1 + PD_LINK_MAC_LEN ||
	    !is_b64(dot + 1, PD_LINK_MAC_LEN))
		return false;
	memcpy(account, token, n);
	account[n] = '\0';
	if (!orn_id_valid(account)) {
		account[0] = '\0';
		return false;
	}
	return true;
}

void pd_link_hash(const char *token, char out[PD_LINK_HASH_MAX])
{
	uint8_t hash[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(hash, (const uint8_t *)token, strlen(token));
	sodium_bin2hex(out, PD_LINK_HASH_MAX, hash, sizeof hash);
}

/* "orion.keys.v1" NUL name NUL. */
static size_t wrap_ad(uint8_t *ad, size_t cap, const char *name)
{
	size_t len = strnlen(name, cap - sizeof WRAP_DOMAIN - 1);
	memcpy(ad, WRAP_DOMAIN, sizeof WRAP_DOMAIN);
	memcpy(ad + sizeof WRAP_DOMAIN, name, len);
	ad[sizeof WRAP_DOMAIN + len] = '\0';
	return sizeof WRAP_DOMAIN + len + 1;
}

void pd_wrap(const uint8_t master[PD_KEY_BYTES], const char *name, const uint8_t key[PD_KEY_BYTES],
             uint8_t out[PD_WRAPPED_BYTES])
{
	uint8_t ad[256];
	size_t ad_len = wrap_ad(ad, sizeof ad, name);
	randombytes_buf(out, NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + NONCE_BYTES, NULL, key, PD_KEY_BYTES, ad, ad_len,
	                                           NULL, out, master);
}

orn_rc pd_unwrap(const uint8_t master[PD_KEY_BYTES], const char *name,
                 const uint8_t wrapped[PD_WRAPPED_BYTES], uint8_t key[PD_KEY_BYTES])
{
	uint8_t ad[256];
	size_t ad_len = wrap_ad(ad, sizeof ad, name);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL, wrapped + NONCE_BYTES,
	                                               PD_WRAPPED_BYTES - NONCE_BYTES, ad, ad_len, wrapped,
	                                               master) != 0) {
		sodium_memzero(key, PD_KEY_BYTES);
		return ORN_EDECODE;
	}
	return ORN_OK;
}
