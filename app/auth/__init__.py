"""Authentication: passwords, API tokens, Basic and Bearer auth, session login, rate limits.

`identity.identify_request` runs before every request; it is the one place where a request's
user is established and marked online.
"""
