/* order_token.c — confirmation tokens: HMAC-SHA-256 derivation and hashes. */
#include "order_token.h"

#include <sodium.h>
#include <string.h>

#define TOKEN_CONTEXT "orion-confirm:"

orn_rc order_token_key_derive(const uint8_t *secret, size_t secret_len, uint8_t key[ORDER_TOKEN_KEY_BYTES])
{
	static const char context[] = "orion order confirmation token key v1";

	if (secret == NULL || secret_len == 0)
		return ORN_EINVAL;
	/* HMAC-SHA-256(secret, context): a key no other use of the secret shares. */
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, secret, secret_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)context, sizeof context - 1);
	crypto_auth_hmacsha256_final(&st, key);
	sodium_memzero(&st, sizeof st);
	return ORN_OK;
}

orn_rc order_token_make(const uint8_t key[ORDER_TOKEN_KEY_BYTES], const char *order_id,
                        char out[ORDER_TOKEN_MAX])
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;

	if (order_id == NULL || strnlen(order_id, ORDER_ID_MAX) >= ORDER_ID_MAX || !orn_id_valid(order_id))
		return ORN_EINVAL;
	crypto_auth_hmacsha256_init(&st, key, ORDER_TOKEN_KEY_BYTES);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)TOKEN_CONTEXT, sizeof TOKEN_CONTEXT - 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)order_id, strlen(order_id));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2base64(out, ORDER_TOKEN_MAX, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(&st, sizeof st);
	sodium_memzero(mac, sizeof mac);
	return ORN_OK;
}

static void sha256_hex(const void *data, size_t len, char out[ORDER_TOKEN_HASH_MAX])
{
	unsigned char digest[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(digest, data, len);
	sodium_bin2hex(out, ORDER_TOKEN_HASH_MAX, digest, sizeof digest);
}

void order_token_hash(const char *token, size_t len, char out[ORDER_TOKEN_HASH_MAX])
{
	sha256_hex(token, len, out);
}

void order_request_hash(const void *data, size_t len, char out[ORDER_TOKEN_HASH_MAX])
{
	sha256_hex(data, len, out);
}
