/* jwt_mint.c — tokens signed with a test server's key (see jwt_mint.h). */
#include "jwt_mint.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void hc_mint_token(const char *data_dir, const char *sub, gw_role role, char out[GW_JWT_MAX_TOKEN])
{
	char path[600];
	unsigned char secret[GW_JWT_SECRET_BYTES];
	char *token = NULL;
	snprintf(path, sizeof path, "%s/%s", data_dir, GW_JWT_SECRET_FILE);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "no %s", path);
	cr_assert_eq(fread(secret, 1, sizeof secret, f), sizeof secret);
	fclose(f);
	gw_jwt *jwt = gw_jwt_create(secret, "orion", "orion-api", 30, 3600);
	cr_assert_not_null(jwt);
	cr_assert_eq(gw_jwt_sign(jwt, sub, role, 0, (int64_t)time(NULL), 600, &token), ORN_OK);
	snprintf(out, GW_JWT_MAX_TOKEN, "%s", token);
	free(token);
	gw_jwt_destroy(jwt);
}
