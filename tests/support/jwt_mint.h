/* jwt_mint.h — access tokens for the HTTP integration tests, signed with the
 * key a running `orion serve` keeps in its data directory: the token a login
 * would give, without the login. Links the gateway (gw_jwt). */
#ifndef ORION_TEST_JWT_MINT_H
#define ORION_TEST_JWT_MINT_H

#include "gw_jwt.h"

/* A token for sub with role, valid ten minutes, signed with the key in
 * data_dir (GW_JWT_SECRET_FILE) into out. Failures abort the test. */
void hc_mint_token(const char *data_dir, const char *sub, gw_role role, char out[GW_JWT_MAX_TOKEN]);

#endif
