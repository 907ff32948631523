/* gw_routes.c — the API's route table (see gw_routes.h): every route of
 * openapi.yaml with its handler and who may call it. The only file that
 * knows every route file. */
#include "gw_routes.h"

#include "gw_api_accounts.h"
#include "gw_api_admin.h"
#include "gw_api_cart.h"
#include "gw_api_desk.h"
#include "gw_api_erase.h"
#include "gw_api_export.h"
#include "gw_api_inventory_feed.h"
#include "gw_api_mail.h"
#include "gw_api_orders.h"
#include "gw_api_payment.h"
#include "gw_api_psp.h"
#include "gw_api_public.h"

#define PUBLIC  GW_ACCESS_PUBLIC
#define ACCOUNT GW_ACCESS_ACCOUNT
#define ADMIN   GW_ACCESS_ADMIN

static const gw_api_route routes[] = {
        /* accounts */
        {GW_POST, "/api/v1/auth/register", gw_public_register, PUBLIC},
        {GW_POST, "/api/v1/auth/login", gw_public_login, PUBLIC},
        {GW_GET, "/api/v1/auth/verify", gw_accounts_verify_page, PUBLIC}, /* the page of the emailed link */
        {GW_POST, "/api/v1/auth/verify", gw_accounts_verify, PUBLIC},     /* the token is the credential */
        {GW_POST, "/api/v1/auth/password-reset", gw_accounts_password_reset, PUBLIC},
        {GW_POST, "/api/v1/auth/password-reset/confirm", gw_accounts_password_reset_confirm, PUBLIC},
        {GW_POST, "/api/v1/auth/logout", gw_public_logout, ACCOUNT},
        {GW_GET, "/api/v1/me", gw_public_me, ACCOUNT},
        {GW_DELETE, "/api/v1/me", gw_erase_me, ACCOUNT},
        {GW_POST, "/api/v1/me/password", gw_public_change_password, ACCOUNT},
        {GW_GET, "/api/v1/me/export", gw_export_me, ACCOUNT},
        /* the catalog */
        {GW_GET, "/api/v1/products", gw_public_products, PUBLIC},
        {GW_GET, "/api/v1/products/{id}", gw_public_product, PUBLIC},
        /* admin: products and stock */
        {GW_POST, "/api/v1/admin/products", gw_admin_create_product, ADMIN},
        {GW_GET, "/api/v1/admin/products/{id}", gw_admin_get_product, ADMIN},
        {GW_PATCH, "/api/v1/admin/products/{id}", gw_admin_update_product, ADMIN},
        {GW_DELETE, "/api/v1/admin/products/{id}", gw_admin_delete_product, ADMIN},
        {GW_GET, "/api/v1/admin/inventory", gw_admin_list_inventory, ADMIN},
        {GW_POST, "/api/v1/admin/inventory/{product_id}/adjustments", gw_admin_adjust_stock, ADMIN},
        {GW_GET, "/api/v1/admin/inventory/events", gw_inventory_feed, ADMIN},
        /* admin: customers */
        {GW_GET, "/api/v1/admin/customers", gw_desk_customers_list, ADMIN},
        {GW_POST, "/api/v1/admin/customers/{id}/erase", gw_erase_customer, ADMIN},
        /* admin: the order desk (ADR 029) */
        {GW_GET, "/api/v1/admin/orders", gw_desk_orders_list, ADMIN},
        {GW_GET, "/api/v1/admin/orders/{id}", gw_desk_order_get, ADMIN},
        /* admin: orders after payment (ADR 028) */
        {GW_POST, "/api/v1/admin/orders/{id}/cancel", gw_admin_orders_cancel, ADMIN},
        {GW_POST, "/api/v1/admin/orders/{id}/ship", gw_admin_orders_ship, ADMIN},
        {GW_POST, "/api/v1/admin/orders/{id}/deliver", gw_admin_orders_deliver, ADMIN},
        {GW_POST, "/api/v1/admin/orders/{id}/refund", gw_payment_retry_refund, ADMIN},
        /* the cart */
        {GW_GET, "/api/v1/cart", gw_cart_get, ACCOUNT},
        {GW_DELETE, "/api/v1/cart", gw_cart_clear, ACCOUNT},
        {GW_POST, "/api/v1/cart/items", gw_cart_add_item, ACCOUNT},
        {GW_PUT, "/api/v1/cart/items/{product_id}", gw_cart_set_quantity, ACCOUNT},
        {GW_DELETE, "/api/v1/cart/items/{product_id}", gw_cart_remove_item, ACCOUNT},
        /* orders */
        {GW_POST, "/api/v1/orders", gw_orders_place, ACCOUNT},
        {GW_GET, "/api/v1/orders", gw_orders_list, ACCOUNT},
        {GW_GET, "/api/v1/orders/{id}", gw_orders_get, ACCOUNT},
        {GW_POST, "/api/v1/orders/{id}/confirm", gw_orders_confirm, PUBLIC}, /* the token is the credential */
        {GW_GET, "/api/v1/orders/{id}/confirm", gw_orders_confirm_page, PUBLIC},
        {GW_POST, "/api/v1/orders/{id}/cancel", gw_orders_cancel, ACCOUNT},
        {GW_GET, "/api/v1/orders/{id}/events", gw_orders_events, ACCOUNT},
        {GW_POST, "/api/v1/orders/{id}/payment", gw_payment_pay, ACCOUNT},
        /* the card payment provider (ADR 028) */
        {GW_GET, "/api/v1/payments/config", gw_psp_config, PUBLIC},
        {GW_POST, "/api/v1/webhooks/psp", gw_psp_webhook, PUBLIC}, /* the signature is the credential */
        /* email */
        {GW_POST, "/api/v1/orders/{id}/confirmation-email", gw_mail_resend_confirmation, ACCOUNT},
        {GW_GET, "/api/v1/admin/mail", gw_mail_list, ADMIN},
        {GW_POST, "/api/v1/admin/mail/{id}/resend", gw_mail_resend, ADMIN},
};

const gw_api_route *gw_routes_table(size_t *count)
{
	*count = ORN_ARRAY_LEN(routes);
	return routes;
}
