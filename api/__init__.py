"""The HTTP face of casework: a Flask app factory; blueprints parse, authorise, call one service."""

from api.app import create_app

__all__ = ["create_app"]
