"""The Flask original's stack, as it worked, for the REST baseline of `python -m bench`.

Flask + Flask-SQLAlchemy (ORM, lazy relationships: the blog list loads each blog's owner and
tags one query at a time, as the original did) on PyMySQL, served by gunicorn with 2 workers
x 8 threads. Same routes and envelope as /api/v1 (sorted keys, as Flask's jsonify), same rows.
Run: gunicorn -w 2 --threads 8 'bench.apps.flask_original:create_app("mysql+pymysql://...")'
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()

blog_tag = db.Table(
    "blog_tag",
    db.Column("blog_id", db.String(36), db.ForeignKey("blog.id"), primary_key=True),
    db.Column("tag_id", db.String(36), db.ForeignKey("tag.id"), primary_key=True),
)


class User(db.Model):  # type: ignore[name-defined, misc]
    id = db.Column(db.String(36), primary_key=True)
    name = db.Column(db.String(64), unique=True)
    role = db.Column(db.Integer, default=0)
    blogs = db.relationship("Blog", backref="owner", lazy="dynamic")

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "role": self.role}


class Tag(db.Model):  # type: ignore[name-defined, misc]
    id = db.Column(db.String(36), primary_key=True)
    name = db.Column(db.String(64))

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name}


class Blog(db.Model):  # type: ignore[name-defined, misc]
    id = db.Column(db.String(36), primary_key=True)
    title = db.Column(db.String(120))
    context = db.Column(db.Text)
    user_id = db.Column(db.String(36), db.ForeignKey("user.id"))
    create_time = db.Column(db.DateTime, default=datetime.now)
    modify_time = db.Column(db.DateTime)
    tags = db.relationship("Tag", secondary=blog_tag, lazy="select")

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "context": self.context,
            "owner": self.owner.to_dict(),
            "tags": [tag.to_dict() for tag in self.tags],
            "create_time": self.create_time.strftime("%Y-%m-%d %H:%M:%S"),
            "modify_time": self.modify_time.strftime("%Y-%m-%d %H:%M:%S")
            if self.modify_time
            else None,
        }


def succeed(data: object):  # type: ignore[no-untyped-def]
    return jsonify({"code": 0, "data": data, "status": "succeed"})


def create_app(database_url: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url or os.environ["FLASK_DATABASE_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 8, "pool_recycle": 3600}
    db.init_app(app)

    @app.get("/api/v1/user/<user_id>")
    def get_user(user_id: str):  # type: ignore[no-untyped-def]
        user = db.session.get(User, user_id)
        if user is None:
            return jsonify({"code": 500, "msg": "User's id does not exist.", "status": "failed"})
        return succeed(user.to_dict())

    @app.post("/api/v1/user")
    def create_user():  # type: ignore[no-untyped-def]
        body = request.get_json()
        user = User(id=str(uuid.uuid1()), name=body["name"], role=body.get("role", 0))
        db.session.add(user)
        db.session.commit()
        return succeed(user.to_dict())

    @app.get("/api/v1/blog")
    def list_blogs():  # type: ignore[no-untyped-def]
        return succeed([blog.to_dict() for blog in Blog.query.all()])

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ok"})

    return app


def seed(database_url: str, users: int, blogs: int, body_chars: int) -> str:
    """Create the tables and the rows; returns one user's id (for GET user by id)."""
    app = create_app(database_url)
    with app.app_context():
        db.drop_all()
        db.create_all()
        people = [User(id=str(uuid.uuid4()), name=f"user{i}", role=0) for i in range(users)]
        tags = [Tag(id=str(uuid.uuid4()), name=f"tag{i}") for i in range(10)]
        db.session.add_all([*people, *tags])
        for i in range(blogs):
            db.session.add(
                Blog(
                    id=str(uuid.uuid4()),
                    title=f"blog {i}",
                    context="x" * body_chars,
                    owner=people[i % users],
                    tags=[tags[i % 10], tags[(i + 1) % 10]],
                )
            )
        db.session.commit()
        return str(people[0].id)
