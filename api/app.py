"""The Flask application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from api import config
from api.extensions import db, migrate
from casework.db import configure_engine

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        "casework",
        instance_path=os.environ.get("CASEWORK_INSTANCE", None)
        or str(Path(__file__).resolve().parent.parent / "instance"),
    )
    app.config.update(config.settings(app.instance_path))
    if test_config:
        app.config.update(test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True, compare_type=True)
    with app.app_context():
        configure_engine(db.engine)

    from api.health import bp as health_bp

    app.register_blueprint(health_bp)

    from api.cli import register_commands

    register_commands(app)
    return app
