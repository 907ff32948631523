/* gw_api_mail.h — the mail routes' handlers (gw_api_mail.c): the delivery log and resends.
 * Each is a gw_api_handler (gw_api.h), routed by gw_routes.c. */
#ifndef ORION_GW_API_MAIL_H
#define ORION_GW_API_MAIL_H

#include <jansson.h>
#include <stddef.h>

#include "gw_api.h"
#include "keystore.h"
#include "mails.h"

gw_api_handler gw_mail_list;
gw_api_handler gw_mail_resend;
gw_api_handler gw_mail_resend_confirmation;

/* The recipient of s as it is shown: the sealed address opened (an order's
 * email is its "customer_email", an alert's its admin's "email"), PD_ERASED
 * once the customer's key is gone or the row blanked (ADR 027). May read the
 * keystore: off the loop unless the key is cached (gw_api_keys_run). */
void gw_mail_recipient_text(ks_store *keys, const mail_log_subject *s, char *out, size_t cap);

/* One email of the log as GET /admin/mail shows it: {id, order_id,
 * product_id, kind, recipient, status, attempts, last_error, delivered_at,
 * updated_at}, recipient as gw_mail_recipient_text gave it. NULL on ENOMEM. */
json_t *gw_mail_entry_json(const proj_mail_entry *e, const char *recipient);

#endif
