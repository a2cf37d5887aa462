"""What authentication checks against, held in the app's state: the cache of verified
passwords, the credential cache (users and API tokens, shared across workers through Redis)
and the login rate limits. The request side, who is calling and whether the page may post, is
app.auth; password hashing is app.passwords.
"""
