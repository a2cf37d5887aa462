"""Domain errors raised by the services. They carry no HTTP: `app.envelope` maps each to a status."""


class ServiceError(Exception):
    """Base of the errors a service raises on purpose; `message` is shown to the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ServiceError):
    """The object named in the path does not exist (HTTP 404)."""


class ConflictError(ServiceError):
    """The change would break a uniqueness rule, e.g. a taken user name (HTTP 409)."""


class InvalidReferenceError(ServiceError):
    """A body field names an object that does not exist, e.g. an unknown tag id (HTTP 400)."""


class ForbiddenError(ServiceError):
    """The caller is known but may not do this, e.g. edit another user's blog (HTTP 403)."""
