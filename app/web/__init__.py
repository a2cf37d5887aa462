"""HTML pages for people, and the request-basics routes of the tutorial the original came from."""
