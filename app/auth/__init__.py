"""Authentication, the request side: who is calling (Basic and Bearer auth, session login,
API tokens: `identity`) and whether a page may post (`csrf`).

`identity.identify_request` runs before every request; it is the one place where a request's
user is established and marked online. What it checks against (verified passwords, the
credential cache, rate limits) is app.credentials, held in the app's state; hashing is
app.passwords.
"""
