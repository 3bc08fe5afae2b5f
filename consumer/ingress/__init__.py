"""The SCIM ingress: an IdP provisions users and groups here; their changes become input events."""
