/* currency.c — the ISO 4217 list (see currency.h).
 *
 * The active alphabetic codes of ISO 4217 (list one of the maintenance
 * agency, SIX, as amended up to 2025: HRK withdrawn in 2023, ZWG added in
 * 2024, XCG in 2025), less the codes that are not a currency a price can be
 * in: funds (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), precious metals
 * (XAG, XAU, XPD, XPT), the IMF's and bond units (XBA, XBB, XBC, XBD, XDR,
 * XSU, XUA), testing (XTS) and "no currency" (XXX). Sorted for bsearch. */
#include "currency.h"

#include <stdlib.h>
#include <string.h>

static const char codes[][CURRENCY_CODE_MAX] = {
        "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
        "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
        "CLP", "CNY", "COP", "CRC", "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
        "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL",
        "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR",
        "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL",
        "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
        "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
        "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD",
        "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
        "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF",
        "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
};

static int compare(const void *key, const void *element)
{
	return strcmp(key, element);
}

bool currency_valid_iso4217(const char *code)
{
	return code != NULL && strnlen(code, CURRENCY_CODE_MAX) == CURRENCY_CODE_MAX - 1 &&
	       bsearch(code, codes, sizeof codes / sizeof codes[0], sizeof codes[0], compare) != NULL;
}
