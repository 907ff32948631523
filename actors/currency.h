/* currency.h — which currency codes the shop accepts: the ISO 4217 codes of
 * currencies in circulation (one definition; products and anything that
 * takes a currency from a client ask here). */
#ifndef ORION_CURRENCY_H
#define ORION_CURRENCY_H

#include <stdbool.h>

#define CURRENCY_CODE_MAX 4 /* bytes of a code, NUL included */

/* True if code is exactly an active ISO 4217 alphabetic code of a currency
 * (three uppercase letters, e.g. "EUR"). Funds codes (BOV, CHE, …), precious
 * metals (XAU, …), special drawing rights and the testing and "no currency"
 * codes (XTS, XXX) are not currencies a price can be in: false. NULL: false. */
bool currency_valid_iso4217(const char *code);

#endif
