"""What a login form or JSON body carries (POST /login)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StrictStr, StringConstraints

from app.models import USER_NAME_MAX


class LoginIn(BaseModel):
    """POST `/login` as JSON or as a form."""

    model_config = ConfigDict(strict=True, extra="ignore")
    name: Annotated[StrictStr, StringConstraints(min_length=1, max_length=USER_NAME_MAX)]
    password: Annotated[StrictStr, StringConstraints(min_length=1, max_length=1024)]
