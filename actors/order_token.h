/* order_token.h — the confirmation token of an order, and its hash.
 *
 * The token is the customer's credential for POST /orders/{id}/confirm; it
 * travels only in the confirmation email and in the customer's request.
 * It is derived, never stored: token = base64url(HMAC-SHA-256(key,
 * "orion-confirm:" order id)), so the gateway (which puts its hash into
 * PlaceOrder) and the mail actor (which writes the link) compute the same
 * token from a shared key without the token entering an event, a log or
 * LMDB. The order aggregate keeps only the hex SHA-256 of the token and
 * refuses a second use by its status. Unguessable: 256 bits from a 32-byte
 * secret key (derived from the JWT secret with a distinct context).
 *
 * Pure functions over caller buffers; libsodium must be initialised. */
#ifndef ORION_ORDER_TOKEN_H
#define ORION_ORDER_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "order.h"
#include "orn.h"

#define ORDER_TOKEN_KEY_BYTES 32
#define ORDER_TOKEN_LEN       43 /* base64url, no padding, of 32 bytes */
#define ORDER_TOKEN_MAX       (ORDER_TOKEN_LEN + 1)

/* Derives the token key from a master secret (out param, 32 bytes).
 * ORN_EINVAL for an empty secret. */
orn_rc order_token_key_derive(const uint8_t *secret, size_t secret_len, uint8_t key[ORDER_TOKEN_KEY_BYTES]);

/* The token of order_id into out (ORDER_TOKEN_MAX bytes, NUL-terminated).
 * ORN_EINVAL if order_id is not a valid id. */
orn_rc order_token_make(const uint8_t key[ORDER_TOKEN_KEY_BYTES], const char *order_id,
                        char out[ORDER_TOKEN_MAX]);

/* The lowercase hex SHA-256 of len bytes of token into out
 * (ORDER_TOKEN_HASH_MAX bytes): what PlaceOrder and Confirm carry. */
void order_token_hash(const char *token, size_t len, char out[ORDER_TOKEN_HASH_MAX]);

/* The lowercase hex SHA-256 of len bytes of data into out: the request hash
 * of PlaceOrder. */
void order_request_hash(const void *data, size_t len, char out[ORDER_TOKEN_HASH_MAX]);

#endif
